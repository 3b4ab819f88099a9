//! Amaturalist's observations over HTTP: idempotent uploads by uuid, validation that names
//! the field, geoprivacy that never shows a stranger the true point, community
//! identification, and the taxonomy (seed checklist, search, CLI import).

use rampart_store::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, TestApp};

/// Taxa of the seed checklist (crates/observations/data/indonesia-seed.csv).
const PYCNONOTUS: i64 = 10;
const KUTILANG: i64 = 11;
const MERBAH: i64 = 12;
/// Straw-headed bulbul: critically endangered, so obscured.
const CUCAK_RAWA: i64 = 13;

/// A community tenant with three members; their tokens.
async fn community(app: &TestApp, name: &str) -> (String, [String; 3]) {
    app.create_platform_admin(&format!("root@{name}.example"))
        .await;
    let (root, _) = app.tokens(&format!("root@{name}.example")).await;
    let tenant = app.create_tenant(&root, name, "community").await;
    let mut tokens = Vec::new();
    for who in ["ani", "budi", "citra"] {
        let email = format!("{who}@{name}.example");
        app.create_user(&tenant, &email, Role::Member).await;
        tokens.push(app.tokens(&email).await.0);
    }
    let tokens: [String; 3] = tokens.try_into().unwrap();
    (tenant, tokens)
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("request")
}

async fn json_of(res: reqwest::Response, status: StatusCode) -> Value {
    let got = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    body
}

async fn observe(app: &TestApp, token: &str, observation: Value) -> Value {
    let res = app
        .post(
            "/api/v1/observations",
            Some(token),
            &json!({ "observation": observation }),
        )
        .await;
    json_of(res, StatusCode::CREATED).await
}

async fn message_of(res: reqwest::Response) -> String {
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_field", "{body}");
    body["error"]["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_retried_upload_is_one_observation_and_bad_fields_are_named() {
    let app = spawn_app().await;
    let (_, [ani, budi, _]) = community(&app, "kebun").await;
    let uuid = "6f1e0c2a-8d4b-4c3e-9a7f-2b5d1e8c9a01";
    let body = json!({"observation": {
        "uuid": uuid, "observed_on": "2026-11-29T06:40:00+07:00",
        "latitude": -6.5971, "longitude": 106.7996, "positional_accuracy": 12,
        "species_guess": "cucak kutilang", "taxon_id": KUTILANG,
        "tags": ["kebun raya"], "fields": {"behaviour": "singing"}
    }});
    let first = app.post("/api/v1/observations", Some(&ani), &body).await;
    let first = json_of(first, StatusCode::CREATED).await;
    assert_eq!(first["uuid"], uuid);
    assert_eq!(
        first["license"], "CC-BY-NC",
        "iNaturalist's default licence"
    );
    assert_eq!(first["observed_on"], "2026-11-29");
    assert_eq!(first["time_observed_at"], "2026-11-29T06:40:00+07:00");
    // The reply was lost; the phone retries, twice, the second time edited.
    let again = app.post("/api/v1/observations", Some(&ani), &body).await;
    let again = json_of(again, StatusCode::OK).await;
    assert_eq!(again["id"], first["id"]);
    let mut edited = body.clone();
    edited["observation"]["description"] = json!("two birds");
    let third = json_of(
        app.post("/api/v1/observations", Some(&ani), &edited).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(third["id"], first["id"]);
    assert_eq!(third["description"], "two birds");
    let current: Vec<&Value> = third["identifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["current"] == true)
        .collect();
    assert_eq!(current.len(), 1, "one owner identification, not three");

    let page = json_of(
        app.get("/api/v1/observations", Some(&budi)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["results"].as_array().unwrap().len(), 1);

    // Someone else's uuid is not theirs to overwrite.
    let res = app.post("/api/v1/observations", Some(&budi), &body).await;
    assert_eq!(error_code(res, StatusCode::CONFLICT).await, "uuid_taken");

    let bad = |observation: Value| {
        let app = &app;
        let ani = ani.clone();
        async move {
            message_of(
                app.post(
                    "/api/v1/observations",
                    Some(&ani),
                    &json!({ "observation": observation }),
                )
                .await,
            )
            .await
        }
    };
    assert!(bad(json!({"latitude": 0.0, "longitude": 0.0}))
        .await
        .starts_with("latitude"));
    assert!(bad(json!({"latitude": 90.0, "longitude": 100.0}))
        .await
        .starts_with("latitude"));
    assert!(bad(json!({"latitude": -6.0, "longitude": 181.0}))
        .await
        .starts_with("longitude"));
    assert!(bad(json!({"latitude": -6.0}))
        .await
        .starts_with("longitude"));
    assert!(bad(json!({"observed_on": "2099-01-01"}))
        .await
        .contains("future"));
    assert!(bad(json!({"observed_on": "1850-01-01"}))
        .await
        .contains("130 years"));
    assert!(bad(json!({"observed_on": "2004"}))
        .await
        .starts_with("observed_on"));
    assert!(bad(json!({"license": "GPL-3.0"}))
        .await
        .starts_with("license"));
    assert!(bad(json!({"geoprivacy": "secret"}))
        .await
        .starts_with("geoprivacy"));
    assert!(bad(json!({"species_guess": "x".repeat(257)}))
        .await
        .starts_with("species_guess"));
    assert!(bad(json!({"taxon_id": 999_999}))
        .await
        .starts_with("taxon_id"));
    assert!(bad(json!({"uuid": "not-a-uuid"})).await.starts_with("uuid"));

    // Only the observer edits or deletes; a delete is listed for syncing clients.
    let id = first["id"].as_i64().unwrap();
    let res = send(
        &app,
        "PATCH",
        &format!("/api/v1/observations/{id}"),
        &budi,
        Some(json!({"observation": {"description": "mine now"}})),
    )
    .await;
    assert_eq!(error_code(res, StatusCode::FORBIDDEN).await, "forbidden");
    let patched = json_of(
        send(
            &app,
            "PATCH",
            &format!("/api/v1/observations/{id}"),
            &ani,
            Some(json!({"observation": {"license": "CC0"}})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["license"], "CC0");
    assert_eq!(
        patched["description"], "two birds",
        "absent fields are kept"
    );
    assert_eq!(patched["private_location"]["latitude"], -6.5971);
    let res = send(
        &app,
        "DELETE",
        &format!("/api/v1/observations/{id}"),
        &ani,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .get(&format!("/api/v1/observations/{id}"), Some(&ani))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let gone = json_of(
        app.get(
            "/api/v1/observations/deleted?since=2026-01-01T00:00:00Z",
            Some(&budi),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(gone["results"][0]["uuid"], uuid);
}

#[tokio::test]
async fn strangers_never_see_the_true_point_of_an_obscured_or_threatened_observation() {
    let app = spawn_app().await;
    let (_, [ani, budi, _]) = community(&app, "hutan").await;
    let (lat, lon) = (-6.2513, 106.8471);
    let obs = observe(&app, &ani, json!({
        "observed_on": "2026-11-30", "latitude": lat, "longitude": lon,
        "positional_accuracy": 8, "geoprivacy": "obscured", "place_guess": "my garden, Jl. Kenari 7",
    }))
    .await;
    let id = obs["id"].as_i64().unwrap();
    assert_eq!(
        obs["private_location"]["latitude"], lat,
        "the observer sees the truth"
    );
    assert_eq!(
        obs["private_location"]["place_guess"],
        "my garden, Jl. Kenari 7"
    );

    let seen = json_of(
        app.get(&format!("/api/v1/observations/{id}"), Some(&budi))
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(seen.get("private_location").is_none());
    assert_eq!(seen["obscured"], true);
    assert!(
        seen["place_guess"].is_null(),
        "the place name would name the site"
    );
    let (plat, plon) = (
        seen["latitude"].as_f64().unwrap(),
        seen["longitude"].as_f64().unwrap(),
    );
    assert!((plat, plon) != (lat, lon));
    // In the 0.2° cell holding the point (south-west corner −6.4, 106.8), not the one
    // north of it that a truncating remainder would pick.
    assert!((-6.4..=-6.2).contains(&plat), "{plat}");
    assert!((106.8..=107.0).contains(&plon), "{plon}");
    assert!(seen["public_positional_accuracy"].as_i64().unwrap() >= 31_000);

    // A re-save keeps the public point: fresh draws would average out to the truth.
    let patched = json_of(
        send(
            &app,
            "PATCH",
            &format!("/api/v1/observations/{id}"),
            &ani,
            Some(json!({"observation": {"description": "again"}})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (patched["latitude"].as_f64(), patched["longitude"].as_f64()),
        (Some(plat), Some(plon))
    );

    // Nothing in the database holds the true point in clear.
    let rows: Vec<(Option<f64>, Option<f64>, Vec<u8>)> = app
        .query_rows("SELECT latitude, longitude, private_location FROM observations")
        .await;
    for (rlat, rlon, sealed) in rows {
        assert_ne!((rlat, rlon), (Some(lat), Some(lon)));
        let text = String::from_utf8_lossy(&sealed);
        assert!(
            !text.contains("6.2513") && !text.contains("Kenari"),
            "sealed, not stored"
        );
    }

    // Private: no public point at all.
    let private = observe(
        &app,
        &ani,
        json!({"latitude": -8.4095, "longitude": 115.1889, "geoprivacy": "private"}),
    )
    .await;
    let seen = json_of(
        app.get(
            &format!("/api/v1/observations/{}", private["id"]),
            Some(&budi),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(seen["latitude"].is_null() && seen["longitude"].is_null());

    // An open observation becomes obscured as soon as anyone identifies a threatened
    // taxon, even when that identification is not the community's.
    let open = observe(
        &app,
        &ani,
        json!({"latitude": 3.5952, "longitude": 98.6722, "taxon_id": KUTILANG}),
    )
    .await;
    assert_eq!(open["latitude"], 3.5952);
    let oid = open["id"].as_i64().unwrap();
    let after = json_of(
        app.post(
            &format!("/api/v1/observations/{oid}/identifications"),
            Some(&budi),
            &json!({"identification": {"taxon_id": CUCAK_RAWA}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(after["taxon_geoprivacy"], "obscured");
    assert_ne!(after["latitude"], 3.5952);
    assert!(after["public_positional_accuracy"].as_i64().unwrap() >= 31_000);
    // Searches by box see only the public point.
    let found = json_of(
        app.get(
            "/api/v1/observations?swlat=3.5947&swlng=98.6717&nelat=3.5957&nelng=98.6727",
            Some(&budi),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(found["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["id"] != oid));
}

#[tokio::test]
async fn identifications_make_the_community_taxon_and_withdrawing_one_undoes_it() {
    let app = spawn_app().await;
    let (_, [ani, budi, citra]) = community(&app, "sawah").await;
    let obs = observe(&app, &ani, json!({
        "observed_on": "2026-11-28", "latitude": -7.7956, "longitude": 110.3695, "taxon_id": KUTILANG,
    }))
    .await;
    let id = obs["id"].as_i64().unwrap();
    assert_eq!(obs["taxon_id"], KUTILANG);
    assert!(
        obs["community_taxon_id"].is_null(),
        "one identification is no community"
    );

    let identify = |token: String, taxon: i64| {
        let app = &app;
        async move {
            json_of(
                app.post(
                    &format!("/api/v1/observations/{id}/identifications"),
                    Some(&token),
                    &json!({"identification": {"taxon_id": taxon}}),
                )
                .await,
                StatusCode::CREATED,
            )
            .await
        }
    };
    let two = identify(budi.clone(), KUTILANG).await;
    assert_eq!(two["community_taxon_id"], KUTILANG);
    assert_eq!(two["identifications_agree"], 1);
    // No photo yet: casual, whatever the community says (iNaturalist needs evidence).
    assert_eq!(two["quality_grade"], "casual");

    // A third opinion, a sibling species: the species scores 2/3 and fails; the genus
    // holds every identification.
    let three = identify(citra.clone(), MERBAH).await;
    assert_eq!(three["community_taxon_id"], PYCNONOTUS);
    assert_eq!(three["taxon_id"], PYCNONOTUS);
    let citra_ident = three["identifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["taxon_id"] == MERBAH)
        .unwrap()
        .clone();
    assert_eq!(
        citra_ident["disagreement"], true,
        "off the observation's lineage"
    );
    assert_eq!(citra_ident["category"], "leading");

    // Citra withdraws: the species is back.
    let res = send(
        &app,
        "PATCH",
        &format!("/api/v1/identifications/{}", citra_ident["id"]),
        &budi,
        Some(json!({"identification": {"current": false}})),
    )
    .await;
    assert_eq!(error_code(res, StatusCode::FORBIDDEN).await, "forbidden");
    let back = json_of(
        send(
            &app,
            "PATCH",
            &format!("/api/v1/identifications/{}", citra_ident["id"]),
            &citra,
            Some(json!({"identification": {"current": false}})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(back["community_taxon_id"], KUTILANG);

    // Votes are one per user and metric, and re-grade: not wild makes it casual for good.
    let voted = json_of(
        app.post(
            &format!("/api/v1/observations/{id}/quality/wild"),
            Some(&budi),
            &json!({"agree": false}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(voted["quality_grade"], "casual");
    let res = app
        .post(
            &format!("/api/v1/observations/{id}/quality/pretty"),
            Some(&budi),
            &json!({"agree": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .post(
            &format!("/api/v1/observations/{id}/needs_id"),
            Some(&citra),
            &json!({"vote": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // Search by taxon includes descendants: the genus finds the species' observation.
    let page = json_of(
        app.get(
            &format!("/api/v1/observations?taxon_id={PYCNONOTUS}"),
            Some(&citra),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["results"][0]["id"], id);

    // Another tenant cannot see it, identify it or vote on it.
    let (_, [other, _, _]) = community(&app, "lain").await;
    let res = app
        .get(&format!("/api/v1/observations/{id}"), Some(&other))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .post(
            &format!("/api/v1/observations/{id}/identifications"),
            Some(&other),
            &json!({"identification": {"taxon_id": KUTILANG}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let page = json_of(
        app.get("/api/v1/observations", Some(&other)).await,
        StatusCode::OK,
    )
    .await;
    assert!(page["results"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn the_taxonomy_is_seeded_searchable_and_imported_by_the_cli() {
    let app = spawn_app().await;
    let (_, [ani, _, _]) = community(&app, "taman").await;
    let found = json_of(
        app.get("/api/v1/taxa?q=kutilang", Some(&ani)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["results"][0]["id"], KUTILANG);
    let rawa = json_of(
        app.get(&format!("/api/v1/taxa/{CUCAK_RAWA}"), Some(&ani))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rawa["name"], "Pycnonotus zeylanicus");
    assert_eq!(rawa["conservation_statuses"][0]["status"], "CR");
    assert_eq!(rawa["conservation_statuses"][0]["geoprivacy"], "obscured");
    assert_eq!(rawa["ancestors"][0]["name"], "Life");
    assert_eq!(rawa["ancestors"].as_array().unwrap().len(), 7);
    let res = app.get("/api/v1/taxa/99999", Some(&ani)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let file = app.dir.path().join("more.csv");
    std::fs::write(
        &file,
        "id,parent_id,scientific_name,rank,common_name_en,common_name_id,iucn\n\
        1001,10,Pycnonotus melanicterus,species,Black-capped Bulbul,Cucak kuricang,VU\n",
    )
    .unwrap();
    let (ok, out, err) = app.cli(&["taxa", "import", file.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert!(out.contains("\"taxa\":1"), "{out}");
    let found = json_of(
        app.get("/api/v1/taxa?q=kuricang", Some(&ani)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["results"][0]["id"], 1001);
    assert_eq!(
        found["results"][0]["ancestor_ids"]
            .as_array()
            .unwrap()
            .last()
            .unwrap(),
        PYCNONOTUS
    );

    std::fs::write(
        &file,
        "id,parent_id,scientific_name,rank\n1002,10,Nova,clade\n",
    )
    .unwrap();
    let (ok, _, err) = app.cli(&["taxa", "import", file.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(err.contains("line 2") && err.contains("clade"), "{err}");
    std::fs::write(
        &file,
        "id,parent_id,scientific_name,rank\n1003,424242,Orphan,species\n",
    )
    .unwrap();
    let (ok, _, err) = app.cli(&["taxa", "import", file.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(err.contains("424242"), "{err}");
}

#[tokio::test]
async fn observations_are_recorded_in_community_tenants_only() {
    let app = spawn_app().await;
    app.create_platform_admin("root@toko.example").await;
    let (root, _) = app.tokens("root@toko.example").await;
    let shop = app.create_tenant(&root, "toko", "merchant").await;
    app.create_user(&shop, "kasir@toko.example", Role::Member)
        .await;
    let (kasir, _) = app.tokens("kasir@toko.example").await;
    let res = app
        .post(
            "/api/v1/observations",
            Some(&kasir),
            &json!({"observation": {"latitude": -6.2, "longitude": 106.8}}),
        )
        .await;
    assert_eq!(error_code(res, StatusCode::FORBIDDEN).await, "forbidden");
    let page = json_of(
        app.get("/api/v1/observations", Some(&kasir)).await,
        StatusCode::OK,
    )
    .await;
    assert!(page["results"].as_array().unwrap().is_empty());
}

/// A little-endian TIFF/EXIF block: orientation 6 (turn 90° clockwise to view), a body
/// serial number, and GPS 6°15'0" S, 106°50'49.56" E.
fn exif_block() -> Vec<u8> {
    fn u16le(v: u16) -> [u8; 2] {
        v.to_le_bytes()
    }
    fn u32le(v: u32) -> [u8; 4] {
        v.to_le_bytes()
    }
    fn entry(out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
        out.extend_from_slice(&u16le(tag));
        out.extend_from_slice(&u16le(kind));
        out.extend_from_slice(&u32le(count));
        out.extend_from_slice(&value);
    }
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    const ASCII: u16 = 2;
    const RATIONAL: u16 = 5;
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&u32le(8));
    // IFD0 at 8: 3 entries, ends at 50; the serial at 50 (11 bytes, padded to 62).
    t.extend_from_slice(&u16le(3));
    entry(&mut t, 0x0112, SHORT, 1, [6, 0, 0, 0]);
    entry(&mut t, 0x8825, LONG, 1, u32le(62));
    entry(&mut t, 0xA431, ASCII, 11, u32le(50));
    t.extend_from_slice(&u32le(0));
    t.extend_from_slice(b"SN12345678\0\0");
    // GPS IFD at 62: 4 entries, ends at 116; latitude at 116, longitude at 140.
    t.extend_from_slice(&u16le(4));
    entry(&mut t, 0x0001, ASCII, 2, *b"S\0\0\0");
    entry(&mut t, 0x0002, RATIONAL, 3, u32le(116));
    entry(&mut t, 0x0003, ASCII, 2, *b"E\0\0\0");
    entry(&mut t, 0x0004, RATIONAL, 3, u32le(140));
    t.extend_from_slice(&u32le(0));
    for (num, den) in [
        (6u32, 1u32),
        (15, 1),
        (0, 1),
        (106, 1),
        (50, 1),
        (4956, 100),
    ] {
        t.extend_from_slice(&u32le(num));
        t.extend_from_slice(&u32le(den));
    }
    assert_eq!(t.len(), 164);
    t
}

/// A 64 × 32 JPEG as a camera held sideways writes it, with the EXIF above.
fn camera_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 32, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 8) as u8, 90])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&img)
        .unwrap();
    let tiff = exif_block();
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    // Right after the SOI marker.
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

async fn upload(
    app: &TestApp,
    token: &str,
    observation: i64,
    uuid: Option<&str>,
    file: &[u8],
) -> reqwest::Response {
    let boundary = "rampart-test-boundary-7f3a";
    let mut body = Vec::new();
    if let Some(uuid) = uuid {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"uuid\"\r\n\r\n{uuid}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes());
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    app.client
        .post(app.url(&format!("/api/v1/observations/{observation}/photos")))
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("upload")
}

#[tokio::test]
async fn a_photo_is_stored_sealed_in_every_size_without_exif_and_makes_research_grade() {
    let app = spawn_app().await;
    let (_, [ani, budi, _]) = community(&app, "kamera").await;
    let obs = observe(&app, &ani, json!({
        "observed_on": "2026-11-29", "latitude": -6.25, "longitude": 106.8471, "taxon_id": KUTILANG,
    }))
    .await;
    let id = obs["id"].as_i64().unwrap();
    let agreed = json_of(
        app.post(
            &format!("/api/v1/observations/{id}/identifications"),
            Some(&budi),
            &json!({"identification": {"taxon_id": KUTILANG}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(agreed["quality_grade"], "casual", "no evidence yet");

    let photo_uuid = "0b7e5e0e-4a39-4d7a-9d52-6f8a1c2b3d4e";
    let res = upload(&app, &budi, id, Some(photo_uuid), &camera_jpeg()).await;
    assert_eq!(error_code(res, StatusCode::FORBIDDEN).await, "forbidden");
    let up = json_of(
        upload(&app, &ani, id, Some(photo_uuid), &camera_jpeg()).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        (
            up["photo"]["width"].as_i64(),
            up["photo"]["height"].as_i64()
        ),
        (Some(32), Some(64)),
        "turned upright"
    );
    assert_eq!(
        up["observation"]["quality_grade"], "research",
        "a species consensus with evidence"
    );
    assert_eq!(up["observation"]["photos_count"], 1);
    let lat = up["prefill"]["latitude"].as_f64().unwrap();
    let lon = up["prefill"]["longitude"].as_f64().unwrap();
    assert!(
        (lat + 6.25).abs() < 1e-9 && (lon - 106.8471).abs() < 1e-6,
        "{lat} {lon}"
    );
    // The retry after a lost reply: the same photo, not a second one.
    let again = json_of(
        upload(&app, &ani, id, Some(photo_uuid), &camera_jpeg()).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["photo"]["id"], up["photo"]["id"]);
    assert_eq!(again["observation"]["photos_count"], 1);

    // Anyone who sees the observation sees its photos; none carries the EXIF.
    let seen = json_of(
        app.get(&format!("/api/v1/observations/{id}"), Some(&budi))
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(!seen.to_string().contains("prefill"));
    let urls = seen["photos"][0]["urls"].as_object().unwrap().clone();
    assert_eq!(urls.len(), 6);
    for (size, url) in &urls {
        let res = app.get(url.as_str().unwrap(), Some(&budi)).await;
        assert_eq!(res.status(), StatusCode::OK, "{size}");
        assert_eq!(res.headers()["content-type"], "image/jpeg");
        let etag = res.headers()["etag"].to_str().unwrap().to_string();
        let bytes = res.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("SN12345678") && !text.contains("Exif"),
            "{size} keeps EXIF"
        );
        let img = image::load_from_memory(&bytes).unwrap();
        let dims = (img.width(), img.height());
        match size.as_str() {
            "square" => assert_eq!(dims, (75, 75)),
            "thumb" => assert_eq!(dims, (32, 64), "no upscaling"),
            _ => assert_eq!(dims, (32, 64), "{size}"),
        }
        let cached = app
            .client
            .get(app.url(url.as_str().unwrap()))
            .bearer_auth(&budi)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    }
    // Every stored file is sealed: no JPEG in the object store.
    let mut files = 0;
    for entry in walk(&app.dir.path().join("objects")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.starts_with(&[0xFF, 0xD8]),
            "{} is a plain JPEG",
            entry.display()
        );
        files += 1;
    }
    assert!(files >= 6, "{files} files");

    // Another tenant cannot fetch it.
    let (_, [other, _, _]) = community(&app, "asing").await;
    let first = urls["medium"].as_str().unwrap();
    assert_eq!(
        app.get(first, Some(&other)).await.status(),
        StatusCode::NOT_FOUND
    );

    // What is not a JPEG, PNG or WebP, and what claims too many pixels.
    let mut heic = vec![0, 0, 0, 24];
    heic.extend_from_slice(b"ftypheic\0\0\0\0mif1heic");
    let res = upload(&app, &ani, id, None, &heic).await;
    assert_eq!(
        error_code(res, StatusCode::UNSUPPORTED_MEDIA_TYPE).await,
        "unsupported_media_type"
    );
    let res = upload(&app, &ani, id, None, &bomb_png()).await;
    let message = message_of(res).await;
    assert!(message.contains("100000"), "{message}");
}

#[tokio::test]
async fn photos_have_their_own_size_limit_above_the_api_body_limit() {
    // API bodies stop at 64 KiB here; photos may be 1 MiB, through the WAF as well.
    let app = crate::helpers::spawn_app_with(|c| {
        c.http.max_body_bytes = 65_536;
        c.observations.max_photo_bytes = 1_048_576;
    })
    .await;
    let (_, [ani, _, _]) = community(&app, "besar").await;
    let obs = observe(&app, &ani, json!({"observed_on": "2026-11-29"})).await;
    let id = obs["id"].as_i64().unwrap();
    // Noise compresses badly: a 400 × 400 JPEG at quality 100 is well over 64 KiB.
    let mut seed = 0x9e37_79b9u32;
    let noisy = image::RgbImage::from_fn(400, 400, |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        image::Rgb([seed as u8, (seed >> 8) as u8, (seed >> 16) as u8])
    });
    let mut photo = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut photo, 100)
        .encode_image(&noisy)
        .unwrap();
    assert!(
        photo.len() > 65_536 && photo.len() < 1_000_000,
        "{}",
        photo.len()
    );
    let up = json_of(
        upload(&app, &ani, id, None, &photo).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(up["photo"]["width"], 400);
    let big = vec![0xAB; 1_100_000];
    let res = upload(&app, &ani, id, None, &big).await;
    assert_eq!(
        error_code(res, StatusCode::PAYLOAD_TOO_LARGE).await,
        "payload_too_large"
    );
    // Other bodies keep the API limit.
    let res = app
        .post(
            "/api/v1/observations",
            Some(&ani),
            &json!({"observation": {"description": "x".repeat(70_000)}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// A valid PNG that claims 100,000 × 100,000 pixels and holds none.
fn bomb_png() -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut typed = kind.to_vec();
        typed.extend_from_slice(data);
        out.extend_from_slice(&typed);
        out.extend_from_slice(&crc32(&typed).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[]);
    chunk(&mut png, b"IEND", &[]);
    png
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
