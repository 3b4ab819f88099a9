//! The object store uploads go to: a folder by default, an S3 bucket when configured.
//! Objects are sealed under the deployment's keyring before they leave the process.

use rampart_config::ObjectLocation;
use rampart_crypto::envelope::Context;
use rampart_objects::{Objects, ObjectsError};

use crate::helpers::spawn_app;

#[tokio::test]
async fn sealed_objects_are_ciphertext_in_the_store_and_open_only_in_their_context() {
    let app = spawn_app().await;
    let crypto = rampart::app::crypto(&app.config, &app.store).await.unwrap();
    let mut places = vec![app.config.objects_location()];
    match std::env::var("RAMPART_TEST_S3_ENDPOINT") {
        Ok(_) => {
            let mut config = app.config.clone();
            assert!(crate::helpers::use_test_s3_for_backups(&mut config));
            places.push(config.backup_location());
        }
        Err(_) => eprintln!("tests: S3 skipped (set RAMPART_TEST_S3_ENDPOINT)"),
    }
    let photo = b"\xff\xd8\xff\xe0 a photo of Rafflesia arnoldii, taken in Bengkulu".repeat(50);
    for place in places {
        let objects = Objects::open(&place).unwrap();
        assert_eq!(
            objects.is_local(),
            matches!(place, ObjectLocation::Dir(_)),
            "{objects:?}"
        );
        let key = format!("tenants/t1/photos/{}", uuid::Uuid::new_v4());
        let context = Context::new("t1", "photos", "content", &key);
        objects
            .put_sealed(&crypto.keyring, "objects", &context, &key, &photo)
            .await
            .unwrap();

        let stored = objects.get(&key).await.unwrap();
        assert!(
            !stored
                .windows(16)
                .any(|w| photo.windows(16).any(|p| p == w)),
            "{}: the store holds clear bytes of the object",
            objects.base()
        );
        assert_eq!(
            objects
                .get_sealed(&crypto.keyring, &context, &key)
                .await
                .unwrap(),
            photo
        );
        // The same bytes presented as another tenant's object, or another object of the
        // same tenant, do not open.
        for other in [
            Context::new("t2", "photos", "content", &key),
            Context::new("t1", "photos", "content", "tenants/t1/photos/other"),
        ] {
            assert!(matches!(
                objects.get_sealed(&crypto.keyring, &other, &key).await,
                Err(ObjectsError::Crypto(_))
            ));
        }
        objects.delete(&key).await.unwrap();
        assert!(matches!(
            objects.get_sealed(&crypto.keyring, &context, &key).await,
            Err(ObjectsError::NotFound(_))
        ));
    }
}
