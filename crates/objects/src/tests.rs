//! The same checks on a local folder and, when `RAMPART_TEST_S3_ENDPOINT` names an
//! S3-compatible server (CI starts moto), on a bucket there.

use super::*;
use rampart_config::{S3Target, Secret};

/// The S3 bucket of the test server, or `None` (and a note saying the backend is skipped).
pub fn test_s3() -> Option<S3Target> {
    let endpoint = std::env::var("RAMPART_TEST_S3_ENDPOINT").ok()?;
    Some(S3Target {
        endpoint,
        bucket: std::env::var("RAMPART_TEST_S3_BUCKET").unwrap_or_else(|_| "rampart-test".into()),
        region: "us-east-1".into(),
        access_key_id: std::env::var("RAMPART_TEST_S3_ACCESS_KEY_ID")
            .unwrap_or_else(|_| "test".into()),
        secret_access_key: Secret::new(
            std::env::var("RAMPART_TEST_S3_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into()),
        ),
    })
}

fn stores(dir: &Path) -> Vec<Objects> {
    let mut out = vec![Objects::open(&ObjectLocation::Dir(dir.join("objects"))).unwrap()];
    match test_s3() {
        Some(s3) => out.push(Objects::open(&ObjectLocation::S3(s3)).unwrap()),
        None => eprintln!("RAMPART_TEST_S3_ENDPOINT is not set: the S3 backend is skipped"),
    }
    out
}

/// A prefix no other test run uses, so runs can share one bucket.
fn run_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn objects_round_trip_list_and_delete() {
    let tmp = tempfile::tempdir().unwrap();
    for objects in stores(tmp.path()) {
        let p = run_prefix();
        objects
            .put(&format!("{p}/a/one"), Bytes::from_static(b"first"))
            .await
            .unwrap();
        objects
            .put(&format!("{p}/a/two"), Bytes::from_static(b"second!"))
            .await
            .unwrap();
        assert_eq!(objects.get(&format!("{p}/a/one")).await.unwrap(), "first");
        assert_eq!(
            objects.list(&format!("{p}/a")).await.unwrap(),
            vec![(format!("{p}/a/one"), 5), (format!("{p}/a/two"), 7)]
        );
        objects.delete(&format!("{p}/a/one")).await.unwrap();
        // Deleting twice is fine; reading a deleted object is NotFound with its URL.
        objects.delete(&format!("{p}/a/one")).await.unwrap();
        match objects.get(&format!("{p}/a/one")).await {
            Err(ObjectsError::NotFound(url)) => {
                assert_eq!(url, objects.url(&format!("{p}/a/one")));
                assert_eq!(objects.key_of(&url), Some(format!("{p}/a/one").as_str()));
            }
            other => panic!("{}: expected NotFound, got {other:?}", objects.base()),
        }
        assert_eq!(objects.list(&format!("{p}/a")).await.unwrap().len(), 1);
        assert!(matches!(
            objects.put("../escape", Bytes::new()).await,
            Err(ObjectsError::BadKey(_))
        ));
    }
}

#[tokio::test]
async fn a_file_larger_than_one_part_goes_up_and_comes_down_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    // Two and a bit parts, with content that differs per part so a reordered or repeated
    // part changes the hash.
    let source = tmp.path().join("source");
    let content: Vec<u8> = (0..(2 * PART_BYTES + 12345))
        .map(|i| (i % 251) as u8 ^ (i / PART_BYTES) as u8)
        .collect();
    std::fs::write(&source, &content).unwrap();
    let want = Digested {
        size: content.len() as u64,
        sha256: hex(&Sha256::digest(&content)),
    };
    for objects in stores(tmp.path()) {
        let key = format!("{}/big.bin", run_prefix());
        assert_eq!(objects.upload_file(&key, &source).await.unwrap(), want);
        assert_eq!(objects.digest(&key).await.unwrap(), want);
        let back = tmp.path().join("back");
        assert_eq!(objects.download_file(&key, &back).await.unwrap(), want);
        assert!(std::fs::read(&back).unwrap() == content);
        objects.delete(&key).await.unwrap();
        assert!(matches!(
            objects.digest(&key).await,
            Err(ObjectsError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn an_unreachable_bucket_is_an_error_that_names_it_and_no_credential() {
    let objects = Objects::open(&ObjectLocation::S3(S3Target {
        // Nothing listens on port 9 (discard) on the loopback here.
        endpoint: "http://127.0.0.1:9".into(),
        bucket: "nowhere".into(),
        region: "us-east-1".into(),
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI-very-secret".into()),
    }))
    .unwrap();
    let err = objects.get("k").await.unwrap_err().to_string();
    assert!(err.contains("s3://nowhere/k"), "{err}");
    assert!(!err.contains("very-secret"), "{err}");
}
