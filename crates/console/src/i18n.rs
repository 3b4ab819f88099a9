//! Languages (Indonesian and English) and time zones (Indonesia's three, and UTC).
//!
//! The language comes from the `rampart_lang` cookie (the switch in the header sets it),
//! else the best of `Accept-Language`, else Indonesian. Times are shown in the
//! `rampart_tz` cookie's zone, WIB by default; Indonesia keeps no daylight saving, so a
//! fixed offset is exact.

use http::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Id,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Id => "id",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "id" => Some(Lang::Id),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The cookie's choice, else the first supported language of `Accept-Language` (by
    /// q-value), else Indonesian.
    pub fn of(headers: &HeaderMap) -> Lang {
        if let Some(l) = crate::session::cookie(headers, "rampart_lang").and_then(Lang::parse) {
            return l;
        }
        let Some(accept) = headers
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
        else {
            return Lang::Id;
        };
        let mut best: Option<(f32, Lang)> = None;
        for part in accept.split(',') {
            let mut bits = part.trim().split(';');
            let tag = bits.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = bits
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            if let Some(lang) = Lang::parse(primary) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, lang));
                }
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::Id)
    }

    /// The text for `key` in this language; the key itself if the table lacks it (a
    /// test checks that every key used by the pages is in the table).
    pub fn t(self, key: &'static str) -> &'static str {
        match TEXT.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, id)) => match self {
                Lang::En => en,
                Lang::Id => id,
            },
            None => key,
        }
    }
}

/// The table has `key` (for the test that every key the pages use is translated).
#[cfg(test)]
pub(crate) fn known(key: &str) -> bool {
    TEXT.iter().any(|(k, _, _)| *k == key)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Wib,
    Wita,
    Wit,
    Utc,
}

impl Zone {
    pub const ALL: [Zone; 4] = [Zone::Wib, Zone::Wita, Zone::Wit, Zone::Utc];

    pub fn name(self) -> &'static str {
        match self {
            Zone::Wib => "WIB",
            Zone::Wita => "WITA",
            Zone::Wit => "WIT",
            Zone::Utc => "UTC",
        }
    }

    fn offset_hours(self) -> i8 {
        match self {
            Zone::Wib => 7,
            Zone::Wita => 8,
            Zone::Wit => 9,
            Zone::Utc => 0,
        }
    }

    pub fn parse(s: &str) -> Option<Zone> {
        Zone::ALL.into_iter().find(|z| z.name() == s)
    }

    pub fn of(headers: &HeaderMap) -> Zone {
        crate::session::cookie(headers, "rampart_tz")
            .and_then(Zone::parse)
            .unwrap_or(Zone::Wib)
    }

    /// An RFC 3339 time from the API as `2026-12-02 19:20:05 WIB`; anything else as is.
    pub fn show(self, rfc3339: &str) -> String {
        use time::format_description::well_known::Rfc3339;
        let Ok(t) = time::OffsetDateTime::parse(rfc3339, &Rfc3339) else {
            return rfc3339.to_string();
        };
        let Ok(offset) = time::UtcOffset::from_hms(self.offset_hours(), 0, 0) else {
            return rfc3339.to_string();
        };
        let local = t.to_offset(offset);
        let format =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        match local.format(&format) {
            Ok(s) => format!("{s} {}", self.name()),
            Err(_) => rfc3339.to_string(),
        }
    }
}

/// `(key, English, Indonesian)`.
const TEXT: &[(&str, &str, &str)] = &[
    ("console", "Rampart console", "Konsol Rampart"),
    ("skip", "Skip to content", "Lewati ke konten"),
    ("sign_in", "Sign in", "Masuk"),
    ("sign_out", "Sign out", "Keluar"),
    ("email", "E-mail", "Surel"),
    ("password", "Password", "Kata sandi"),
    ("totp_code", "Authenticator code", "Kode autentikator"),
    ("totp_hint", "Six digits from your authenticator app, or a recovery code.", "Enam digit dari aplikasi autentikator, atau kode pemulihan."),
    ("verify", "Verify", "Verifikasi"),
    ("signed_out", "You have been signed out.", "Anda telah keluar."),
    ("session_over", "Your session has ended. Please sign in again.", "Sesi Anda telah berakhir. Silakan masuk lagi."),
    ("language", "Language", "Bahasa"),
    ("time_zone", "Time zone", "Zona waktu"),
    ("apply", "Apply", "Terapkan"),
    ("home", "Overview", "Ringkasan"),
    ("tenants", "Tenants", "Tenan"),
    ("users", "Users", "Pengguna"),
    ("api_keys", "API keys", "Kunci API"),
    ("audit", "Audit log", "Log audit"),
    ("security", "Security events", "Peristiwa keamanan"),
    ("payments", "Payments", "Pembayaran"),
    ("review", "Review queue", "Antrean tinjauan"),
    ("webhooks", "Webhooks", "Webhook"),
    ("fraud_rules", "Fraud rules", "Aturan fraud"),
    ("report", "Report", "Laporan"),
    ("account", "Account", "Akun"),
    ("name", "Name", "Nama"),
    ("kind", "Kind", "Jenis"),
    ("status", "Status", "Status"),
    ("role", "Role", "Peran"),
    ("created", "Created", "Dibuat"),
    ("create", "Create", "Buat"),
    ("save", "Save", "Simpan"),
    ("id", "ID", "ID"),
    ("next_page", "Next page", "Halaman berikutnya"),
    ("first_page", "First page", "Halaman pertama"),
    ("nothing_yet", "Nothing here yet.", "Belum ada apa-apa di sini."),
    ("new_tenant", "New tenant", "Tenan baru"),
    ("new_user", "New user", "Pengguna baru"),
    ("password_optional", "Platform admins set one; tenant admins leave it empty and the user is invited by e-mail.", "Admin platform mengisinya; admin tenan mengosongkannya dan pengguna diundang lewat surel."),
    ("invited", "Invitation sent.", "Undangan terkirim."),
    ("created_ok", "Created.", "Dibuat."),
    ("saved", "Saved.", "Tersimpan."),
    ("new_api_key", "New API key", "Kunci API baru"),
    ("scopes", "Scopes", "Cakupan"),
    ("scopes_hint", "Permissions, separated by spaces or commas, e.g. payments:read payments:write.", "Izin, dipisah spasi atau koma, mis. payments:read payments:write."),
    ("expires_days", "Expires after (days)", "Kedaluwarsa setelah (hari)"),
    ("secret_once", "Copy the secret now: it is shown only once.", "Salin rahasia ini sekarang: hanya ditampilkan sekali."),
    ("copy", "Copy", "Salin"),
    ("copied", "Copied", "Tersalin"),
    ("revoke", "Revoke", "Cabut"),
    ("revoked", "Revoked", "Dicabut"),
    ("revoke_confirm", "Revoke this key? Callers using it stop at once.", "Cabut kunci ini? Pemanggil yang memakainya berhenti seketika."),
    ("last_used", "Last used", "Terakhir dipakai"),
    ("never", "never", "belum pernah"),
    ("action", "Action", "Aksi"),
    ("actor", "Actor", "Pelaku"),
    ("target", "Target", "Sasaran"),
    ("time", "Time", "Waktu"),
    ("filter", "Filter", "Saring"),
    ("from", "From", "Dari"),
    ("to", "To", "Sampai"),
    ("chain", "Audit chain", "Rantai audit"),
    ("chain_ok", "Verified: every event is chained and the last checkpoint's signature holds.", "Terverifikasi: setiap peristiwa terantai dan tanda tangan checkpoint terakhir sah."),
    ("chain_bad", "Verification failed", "Verifikasi gagal"),
    ("last_checkpoint", "Last signed checkpoint", "Checkpoint bertanda tangan terakhir"),
    ("events", "Events", "Peristiwa"),
    ("date", "Date", "Tanggal"),
    ("event", "Event", "Peristiwa"),
    ("severity", "Severity", "Tingkat"),
    ("source_ip", "Source IP", "IP sumber"),
    ("detail", "Detail", "Rincian"),
    ("amount", "Amount", "Jumlah"),
    ("currency", "Currency", "Mata uang"),
    ("card", "Card", "Kartu"),
    ("description", "Description", "Deskripsi"),
    ("reference", "Reference", "Referensi"),
    ("fraud", "Fraud score", "Skor fraud"),
    ("captured", "Captured", "Ditangkap"),
    ("refunded", "Refunded", "Dikembalikan"),
    ("refund", "Refund", "Kembalikan dana"),
    ("refund_confirm", "Refund this amount?", "Kembalikan dana sejumlah ini?"),
    ("capture", "Capture", "Tangkap"),
    ("cancel", "Cancel", "Batalkan"),
    ("approve", "Approve", "Setujui"),
    ("reject", "Reject", "Tolak"),
    ("amount_hint", "Minor units (e.g. cents); empty for all that is left.", "Satuan terkecil (mis. sen); kosongkan untuk seluruh sisa."),
    ("history", "History", "Riwayat"),
    ("all", "All", "Semua"),
    ("download_csv", "Download CSV", "Unduh CSV"),
    ("daily_volume", "Daily volume", "Volume harian"),
    ("mfa", "Two-step sign-in", "Masuk dua langkah"),
    ("mfa_on", "Two-step sign-in is on.", "Masuk dua langkah aktif."),
    ("mfa_off", "Two-step sign-in is off. Turn it on to protect your account.", "Masuk dua langkah tidak aktif. Aktifkan untuk melindungi akun Anda."),
    ("mfa_enroll", "Set up an authenticator", "Siapkan autentikator"),
    ("mfa_scan", "Scan this code with your authenticator app, or type the key, then enter the code it shows.", "Pindai kode ini dengan aplikasi autentikator, atau ketik kuncinya, lalu masukkan kode yang ditampilkan."),
    ("recovery_codes", "Recovery codes", "Kode pemulihan"),
    ("recovery_once", "Keep these somewhere safe: each works once instead of a code, and they are shown only now.", "Simpan di tempat aman: masing-masing berlaku sekali sebagai pengganti kode, dan hanya ditampilkan sekarang."),
    ("change_password", "Change password", "Ubah kata sandi"),
    ("current_password", "Current password", "Kata sandi saat ini"),
    ("new_password", "New password", "Kata sandi baru"),
    ("password_changed", "Password changed. Your other sessions have ended.", "Kata sandi diubah. Sesi Anda yang lain telah berakhir."),
    ("forbidden", "You do not have permission to see this.", "Anda tidak memiliki izin untuk melihat ini."),
    ("not_found", "Not found.", "Tidak ditemukan."),
    ("csrf_failed", "This form expired or did not come from this console. Reload the page and try again.", "Formulir ini kedaluwarsa atau tidak berasal dari konsol ini. Muat ulang halaman dan coba lagi."),
    ("disable", "Disable", "Nonaktifkan"),
    ("enable", "Enable", "Aktifkan"),
    ("tenant", "Tenant", "Tenan"),
    ("signed_in_as", "Signed in as", "Masuk sebagai"),
    ("new_endpoint", "New endpoint", "Endpoint baru"),
    ("deliveries", "Deliveries", "Pengiriman"),
    ("attempts", "Attempts", "Percobaan"),
    ("resend", "Resend", "Kirim ulang"),
    ("operations", "Operations", "Operasi"),
    ("keys", "Keys", "Kunci"),
    ("keyring", "Encryption keys", "Kunci enkripsi"),
    ("version", "Version", "Versi"),
    ("min_version", "Oldest that opens", "Tertua yang bisa membuka"),
    ("versions", "Versions", "Versi"),
    ("rotated", "Rotated", "Dirotasi"),
    ("age_days", "Age (days)", "Umur (hari)"),
    ("signing_keys", "Signing keys", "Kunci tanda tangan"),
    ("signing_rotation", "The signing key of each set rotates at its first use after", "Kunci tanda tangan tiap set dirotasi pada pemakaian pertama setelah"),
    ("days", "days", "hari"),
    ("purpose", "Purpose", "Kegunaan"),
    ("scope", "Scope", "Cakupan"),
    ("held", "Held in", "Disimpan di"),
    ("unpublished", "unpublished", "tidak dipublikasikan"),
    ("rotation_due", "Rotation due", "Jatuh tempo rotasi"),
    ("backups", "Backups", "Cadangan"),
    ("backup", "Backup", "Cadangan"),
    ("last_drill", "Last restore drill", "Latihan pemulihan terakhir"),
    ("no_drill", "No restore drill has run yet: run `rampart backup drill` or set backup.drill_schedule.", "Belum ada latihan pemulihan: jalankan `rampart backup drill` atau atur backup.drill_schedule."),
    ("drill_ok", "Passed", "Lulus"),
    ("drill_failed", "Failed", "Gagal"),
    ("backend", "Database", "Basis data"),
    ("size", "Size", "Ukuran"),
    ("key", "Key", "Kunci"),
    ("jobs", "Jobs", "Pekerjaan"),
    ("queue", "Queue", "Antrean"),
    ("updated", "Updated", "Diperbarui"),
    ("last_error", "Last error", "Galat terakhir"),
    ("retry", "Retry", "Coba lagi"),
    ("alerts", "Alerts", "Peringatan"),
    ("alert", "Alert", "Peringatan"),
    ("group", "Group", "Kelompok"),
    ("acknowledge", "Acknowledge", "Tangani"),
    ("resolve", "Resolve", "Selesaikan"),
    ("snooze", "Snooze", "Tunda"),
    ("hours", "Hours", "Jam"),
    ("suppress", "Suppress matches…", "Redam kecocokan…"),
    ("suppress_hint", "New matches of this rule for this group raise nothing until then; the reason is audited.", "Kecocokan baru aturan ini untuk kelompok ini tidak memunculkan apa pun sampai saat itu; alasannya diaudit."),
    ("reason", "Reason", "Alasan"),
    ("suppressions", "Suppressions in force", "Peredaman yang berlaku"),
    ("rule", "Rule", "Aturan"),
    ("expires", "Expires", "Berakhir"),
    ("suppressed", "Kept quiet", "Diredam"),
    ("lift", "Lift", "Cabut"),
    ("requeued", "Job re-queued with a fresh set of attempts.", "Pekerjaan diantrekan ulang dengan jatah percobaan baru."),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_supported() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::of(&h), Lang::Id);
        h.insert(
            "accept-language",
            "en-US,en;q=0.9,id;q=0.8".parse().unwrap(),
        );
        assert_eq!(Lang::of(&h), Lang::En);
        h.insert("accept-language", "fr, id;q=0.5, en;q=0.4".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::Id);
        h.insert("cookie", "a=b; rampart_lang=en".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::En);
    }

    #[test]
    fn every_key_is_unique_and_translated() {
        let mut keys: Vec<_> = TEXT.iter().map(|(k, _, _)| *k).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "duplicate key");
        for (k, en, id) in TEXT {
            assert!(!en.is_empty() && !id.is_empty(), "{k}");
        }
    }

    #[test]
    fn times_show_in_the_zone() {
        assert_eq!(
            Zone::Wib.show("2026-12-02T12:20:05Z"),
            "2026-12-02 19:20:05 WIB"
        );
        assert_eq!(
            Zone::Wit.show("2026-12-02T20:00:00Z"),
            "2026-12-03 05:00:00 WIT"
        );
        assert_eq!(Zone::Utc.show("not a time"), "not a time");
    }
}
