//! The mail identity sends, in Indonesian and English: sign-up verification, password
//! reset, e-mail change, and security notices. Registered with the notification service
//! by `app::build`; the flows are `auth/signup.rs`, `auth/password_reset.rs` and
//! `auth/email_change.rs`.

use rampart_notify::{Template, Text};

pub const VERIFY_EMAIL: &str = "identity.verify_email";
pub const PASSWORD_RESET: &str = "identity.password_reset";
pub const PASSWORD_CHANGED: &str = "identity.password_changed";
pub const MFA_ENABLED: &str = "identity.mfa_enabled";
pub const MFA_DISABLED: &str = "identity.mfa_disabled";
pub const API_KEY_CREATED: &str = "identity.api_key_created";
pub const NEW_DEVICE: &str = "identity.new_device";
pub const INVITATION: &str = "identity.invitation";
pub const INVITATION_ELSEWHERE: &str = "identity.invitation_elsewhere";
pub const EMAIL_CHANGE: &str = "identity.email_change";
pub const EMAIL_CHANGE_NOTICE: &str = "identity.email_change_notice";

/// A security notice: one subject per language, one sentence of what happened.
const fn notice(
    kind: &'static str,
    id: (&'static str, &'static str, &'static str),
    en: (&'static str, &'static str, &'static str),
) -> Template {
    Template {
        kind,
        id: Text {
            subject: id.0,
            text: id.1,
            html: id.2,
        },
        en: Text {
            subject: en.0,
            text: en.1,
            html: en.2,
        },
        security: true,
    }
}

/// A verification link works for this long.
pub const VERIFY_TTL_SECS: i64 = 24 * 3600;
/// An invitation link works for this long: long enough for a weekend.
pub const INVITATION_TTL_SECS: i64 = 72 * 3600;
/// An e-mail change link works for this long.
pub const EMAIL_CHANGE_TTL_SECS: i64 = 24 * 3600;
/// A reset link works for this long.
pub const RESET_TTL_SECS: i64 = 30 * 60;

pub fn templates() -> Vec<Template> {
    vec![
        Template {
            kind: INVITATION,
            id: Text {
                subject: "Anda diundang ke Rampart",
                text: "Halo {{name}},\n\nadministrator organisasi Anda mengundang Anda. Untuk \
                       menerima undangan dan memilih kata sandi Anda, buka:\n{{link}}\n\n\
                       Atau kirim kode ini ke POST /api/v1/auth/accept-invitation:\n{{token}}\n\n\
                       Tautan ini hanya berlaku sekali, selama 72 jam. Jika Anda tidak \
                       mengharapkannya, abaikan e-mail ini.\n",
                html: "<p>Halo {{name}},</p><p>administrator organisasi Anda mengundang Anda. \
                       Untuk menerima undangan dan memilih kata sandi Anda:</p><p><a \
                       href=\"{{link}}\">Terima undangan</a></p><p>Tautan ini hanya berlaku \
                       sekali, selama 72 jam. Jika Anda tidak mengharapkannya, abaikan e-mail \
                       ini.</p>",
            },
            en: Text {
                subject: "You are invited to Rampart",
                text: "Hello {{name}},\n\nan administrator of your organisation invited you. To \
                       accept and choose your password, open:\n{{link}}\n\nOr send this code \
                       to POST /api/v1/auth/accept-invitation:\n{{token}}\n\nThe link works once, \
                       for 72 hours. If you did not expect it, ignore this mail.\n",
                html: "<p>Hello {{name}},</p><p>an administrator of your organisation invited \
                       you. To accept and choose your password:</p><p><a href=\"{{link}}\">\
                       Accept the invitation</a></p><p>The link works once, for 72 hours. If you \
                       did not expect it, ignore this mail.</p>",
            },
            security: true,
        },
        Template {
            kind: INVITATION_ELSEWHERE,
            id: Text {
                subject: "Undangan ke Rampart untuk alamat yang sudah terdaftar",
                text: "Halo {{name}},\n\nsebuah organisasi mengundang alamat ini, tetapi alamat \
                       ini sudah memiliki akun di organisasi lain, dan satu alamat hanya dapat \
                       memiliki satu akun. Jika Anda ingin bergabung, minta mereka mengundang \
                       alamat lain milik Anda. Jika Anda tidak mengharapkannya, abaikan e-mail \
                       ini.\n",
                html: "<p>Halo {{name}},</p><p>sebuah organisasi mengundang alamat ini, tetapi \
                       alamat ini sudah memiliki akun di organisasi lain, dan satu alamat hanya \
                       dapat memiliki satu akun.</p><p>Jika Anda ingin bergabung, minta mereka \
                       mengundang alamat lain milik Anda. Jika Anda tidak mengharapkannya, \
                       abaikan e-mail ini.</p>",
            },
            en: Text {
                subject: "An invitation to Rampart for an address that has an account",
                text: "Hello {{name}},\n\nan organisation invited this address, but it already \
                       has an account with another organisation, and one address can hold one \
                       account. If you want to join, ask them to invite another address of \
                       yours. If you did not expect this, ignore this mail.\n",
                html: "<p>Hello {{name}},</p><p>an organisation invited this address, but it \
                       already has an account with another organisation, and one address can \
                       hold one account.</p><p>If you want to join, ask them to invite another \
                       address of yours. If you did not expect this, ignore this mail.</p>",
            },
            security: true,
        },
        Template {
            kind: VERIFY_EMAIL,
            id: Text {
                subject: "Konfirmasi alamat e-mail Anda",
                text: "Halo {{name}},\n\nkonfirmasi alamat e-mail Anda untuk menyelesaikan \
                       pendaftaran:\n{{link}}\n\nTautan ini hanya berlaku sekali, selama 24 jam. \
                       Jika Anda tidak mendaftar, abaikan e-mail ini.\n",
                html: "<p>Halo {{name}},</p><p>konfirmasi alamat e-mail Anda untuk \
                       menyelesaikan pendaftaran:</p><p><a href=\"{{link}}\">Konfirmasi \
                       e-mail</a></p><p>Tautan ini hanya berlaku sekali, selama 24 jam. Jika \
                       Anda tidak mendaftar, abaikan e-mail ini.</p>",
            },
            en: Text {
                subject: "Confirm your e-mail address",
                text: "Hello {{name}},\n\nconfirm your e-mail address to finish signing \
                       up:\n{{link}}\n\nThe link works once, for 24 hours. If you did not sign \
                       up, ignore this mail.\n",
                html: "<p>Hello {{name}},</p><p>confirm your e-mail address to finish signing \
                       up:</p><p><a href=\"{{link}}\">Confirm e-mail</a></p><p>The link works \
                       once, for 24 hours. If you did not sign up, ignore this mail.</p>",
            },
            security: true,
        },
        Template {
            kind: PASSWORD_RESET,
            id: Text {
                subject: "Atur ulang kata sandi Anda",
                text: "Ada permintaan untuk mengatur ulang kata sandi akun Anda. Untuk memilih \
                       kata sandi baru, buka:\n{{link}}\n\nTautan ini hanya berlaku sekali, \
                       selama 30 menit. Jika itu bukan Anda, abaikan e-mail ini: kata sandi Anda \
                       tidak berubah.\n",
                html: "<p>Ada permintaan untuk mengatur ulang kata sandi akun Anda.</p><p><a \
                       href=\"{{link}}\">Pilih kata sandi baru</a></p><p>Tautan ini hanya \
                       berlaku sekali, selama 30 menit. Jika itu bukan Anda, abaikan e-mail ini: \
                       kata sandi Anda tidak berubah.</p>",
            },
            en: Text {
                subject: "Reset your password",
                text: "Someone asked to reset the password of your account. To choose a new \
                       one, open:\n{{link}}\n\nThe link works once, for 30 minutes. If it was \
                       not you, ignore this mail: your password stays as it is.\n",
                html: "<p>Someone asked to reset the password of your account.</p><p><a \
                       href=\"{{link}}\">Choose a new password</a></p><p>The link works once, \
                       for 30 minutes. If it was not you, ignore this mail: your password stays \
                       as it is.</p>",
            },
            security: true,
        },
        Template {
            kind: PASSWORD_CHANGED,
            id: Text {
                subject: "Kata sandi Anda telah diubah",
                text: "Kata sandi akun Anda telah diubah dan semua sesi telah dikeluarkan. Jika \
                       itu bukan Anda, segera hubungi administrator Anda.\n",
                html: "<p>Kata sandi akun Anda telah diubah dan semua sesi telah dikeluarkan.</p>\
                       <p>Jika itu bukan Anda, segera hubungi administrator Anda.</p>",
            },
            en: Text {
                subject: "Your password was changed",
                text: "The password of your account was changed and every session was signed \
                       out. If this was not you, contact your administrator at once.\n",
                html: "<p>The password of your account was changed and every session was \
                       signed out.</p><p>If this was not you, contact your administrator at \
                       once.</p>",
            },
            security: true,
        },
        notice(
            MFA_ENABLED,
            (
                "Verifikasi dua langkah diaktifkan",
                "Verifikasi dua langkah (TOTP) telah diaktifkan untuk akun Anda. Jika itu bukan Anda, segera hubungi administrator Anda.\n",
                "<p>Verifikasi dua langkah (TOTP) telah diaktifkan untuk akun Anda.</p><p>Jika itu bukan Anda, segera hubungi administrator Anda.</p>",
            ),
            (
                "Two-step verification was turned on",
                "Two-step verification (TOTP) was turned on for your account. If this was not you, contact your administrator at once.\n",
                "<p>Two-step verification (TOTP) was turned on for your account.</p><p>If this was not you, contact your administrator at once.</p>",
            ),
        ),
        notice(
            MFA_DISABLED,
            (
                "Verifikasi dua langkah dinonaktifkan",
                "Verifikasi dua langkah (TOTP) telah dinonaktifkan untuk akun Anda. Jika itu bukan Anda, segera hubungi administrator Anda.\n",
                "<p>Verifikasi dua langkah (TOTP) telah dinonaktifkan untuk akun Anda.</p><p>Jika itu bukan Anda, segera hubungi administrator Anda.</p>",
            ),
            (
                "Two-step verification was turned off",
                "Two-step verification (TOTP) was turned off for your account. If this was not you, contact your administrator at once.\n",
                "<p>Two-step verification (TOTP) was turned off for your account.</p><p>If this was not you, contact your administrator at once.</p>",
            ),
        ),
        notice(
            API_KEY_CREATED,
            (
                "Kunci API baru dibuat",
                "Anda membuat kunci API baru bernama \"{{name}}\". Jika itu bukan Anda, cabut kunci itu dan hubungi administrator Anda.\n",
                "<p>Anda membuat kunci API baru bernama <b>{{name}}</b>.</p><p>Jika itu bukan Anda, cabut kunci itu dan hubungi administrator Anda.</p>",
            ),
            (
                "A new API key was created",
                "You created a new API key named \"{{name}}\". If this was not you, revoke it and contact your administrator.\n",
                "<p>You created a new API key named <b>{{name}}</b>.</p><p>If this was not you, revoke it and contact your administrator.</p>",
            ),
        ),
        Template {
            kind: EMAIL_CHANGE,
            id: Text {
                subject: "Konfirmasi alamat e-mail baru Anda",
                text: "Ada permintaan untuk memakai alamat ini sebagai e-mail akun Anda. Untuk \
                       mengonfirmasi, buka:\n{{link}}\n\nTautan ini hanya berlaku sekali, \
                       selama 24 jam. Jika itu bukan Anda, abaikan e-mail ini.\n",
                html: "<p>Ada permintaan untuk memakai alamat ini sebagai e-mail akun Anda.</p>\
                       <p><a href=\"{{link}}\">Konfirmasi alamat baru</a></p><p>Tautan ini \
                       hanya berlaku sekali, selama 24 jam. Jika itu bukan Anda, abaikan e-mail \
                       ini.</p>",
            },
            en: Text {
                subject: "Confirm your new e-mail address",
                text: "Someone asked to use this address for their account. To confirm, \
                       open:\n{{link}}\n\nThe link works once, for 24 hours. If it was not \
                       you, ignore this mail.\n",
                html: "<p>Someone asked to use this address for their account.</p><p><a \
                       href=\"{{link}}\">Confirm the new address</a></p><p>The link works \
                       once, for 24 hours. If it was not you, ignore this mail.</p>",
            },
            security: true,
        },
        notice(
            EMAIL_CHANGE_NOTICE,
            (
                "Permintaan perubahan alamat e-mail",
                "Ada permintaan untuk mengubah alamat e-mail akun Anda menjadi {{new_email}}. Perubahan berlaku setelah alamat baru dikonfirmasi. Jika itu bukan Anda, atur ulang kata sandi Anda sekarang dan hubungi administrator Anda.\n",
                "<p>Ada permintaan untuk mengubah alamat e-mail akun Anda menjadi <b>{{new_email}}</b>. Perubahan berlaku setelah alamat baru dikonfirmasi.</p><p>Jika itu bukan Anda, atur ulang kata sandi Anda sekarang dan hubungi administrator Anda.</p>",
            ),
            (
                "Your e-mail address is being changed",
                "Someone asked to change the e-mail address of your account to {{new_email}}. It changes once the new address is confirmed. If this was not you, reset your password now and contact your administrator.\n",
                "<p>Someone asked to change the e-mail address of your account to <b>{{new_email}}</b>. It changes once the new address is confirmed.</p><p>If this was not you, reset your password now and contact your administrator.</p>",
            ),
        ),
        notice(
            NEW_DEVICE,
            (
                "Login dari perangkat baru",
                "Akun Anda baru saja login dari perangkat atau jaringan baru ({{user_agent}}, {{network}}). Jika itu bukan Anda, atur ulang kata sandi Anda sekarang.\n",
                "<p>Akun Anda baru saja login dari perangkat atau jaringan baru ({{user_agent}}, {{network}}).</p><p>Jika itu bukan Anda, atur ulang kata sandi Anda sekarang.</p>",
            ),
            (
                "Login from a new device",
                "Your account just logged in from a new device or network ({{user_agent}}, {{network}}). If this was not you, reset your password now.\n",
                "<p>Your account just logged in from a new device or network ({{user_agent}}, {{network}}).</p><p>If this was not you, reset your password now.</p>",
            ),
        ),
    ]
}

/// The device a login comes from, as a digest: the user agent and the address's network
/// (/24 for IPv4, /48 for IPv6), so a new IP in the same network is the same device.
pub(crate) fn device_of(info: &rampart_edge::RequestInfo) -> (String, String) {
    let network = match info.client_ip {
        Some(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Some(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        None => "unknown".into(),
    };
    let ua = info.user_agent.clone().unwrap_or_default();
    (
        rampart_crypto::secret_digest(&format!("{ua}\n{network}")),
        network,
    )
}

/// The notices a security event sends `user`: always by e-mail (it cannot be turned
/// off), and by SMS too when they have a phone number and chose SMS for security notices.
pub(crate) async fn security_notices(
    identity: &crate::Identity,
    user: &rampart_store::User,
    template: &str,
    data: serde_json::Value,
) -> Result<Vec<rampart_store::notify::NewNotification>, crate::IdentityError> {
    use rampart_notify::{Channel, Locale, Notification};
    let store = identity.store();
    let notify = identity.notify();
    let mut channels = vec![Channel::Email];
    if store
        .notification_preference(
            &user.tenant_id,
            &user.id,
            crate::notify_api::SECURITY,
            "sms",
        )
        .await?
        == Some(true)
        && store.user_has_phone(&user.tenant_id, &user.id).await?
    {
        channels.push(Channel::Sms);
    }
    let mut notices = Vec::new();
    for channel in channels {
        notices.push(
            notify
                .prepare(Notification {
                    tenant: user.tenant_id.clone(),
                    channel,
                    to: match channel {
                        Channel::Sms => user.id.clone(),
                        _ => user.email.clone(),
                    },
                    template: template.to_string(),
                    locale: Locale::En,
                    data: data.clone(),
                    dedupe_key: None,
                    subject_id: Some(user.id.clone()),
                })
                .await?,
        );
    }
    Ok(notices)
}
