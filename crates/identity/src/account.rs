//! The mail identity sends, in Indonesian and English: sign-up verification, password
//! reset, and security notices. Registered with the notification service by
//! `app::build`; the flows are `auth/signup.rs` and `auth/password_reset.rs`.

use rampart_notify::{Template, Text};

pub const VERIFY_EMAIL: &str = "identity.verify_email";
pub const PASSWORD_RESET: &str = "identity.password_reset";
pub const PASSWORD_CHANGED: &str = "identity.password_changed";

/// A verification link works for this long.
pub const VERIFY_TTL_SECS: i64 = 24 * 3600;
/// A reset link works for this long.
pub const RESET_TTL_SECS: i64 = 30 * 60;

pub fn templates() -> Vec<Template> {
    vec![
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
    ]
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
