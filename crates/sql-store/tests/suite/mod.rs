//! The checks every database must pass, each on a fresh, migrated store.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use datastore::{
    InferenceStore, NewBox, NewCandidate, NewInference, NewPicture, SeedStore, StoreError,
    UserStore,
};
use migrations::{Migrator, MigratorTrait};
use pipeline::ports::CatalogueRecorder;
use pipeline::{Catalogue, CatalogueDocument, RecordedIds};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use sql_store::{SqlStore, seed_id};
use uuid::Uuid;

/// Every table of the schema, parents first.
const TABLES: [&str; 10] = [
    "users",
    "seeds",
    "catalogue_models",
    "catalogue_pipelines",
    "pipeline_models",
    "picture_sets",
    "pictures",
    "inferences",
    "inference_boxes",
    "box_candidates",
];

/// The seed ids every database must have, pinned: changing one breaks existing data.
const PINNED_SEEDS: [(&str, &str); 15] = [
    ("Brassica napus", "d3460a50-dd9e-5e5a-8b31-72ea4491aaa3"),
    ("Brassica juncea", "7c47d91d-ca95-5bd3-971f-4ff8aff0c761"),
    ("Cirsium arvense", "c3bb7ed3-4e64-5d06-ba50-f04be80a3324"),
    ("Cirsium vulgare", "a6184856-6108-5523-96a0-226df83429fe"),
    ("Carduus nutans", "90c16665-6902-5134-83f2-e18f9cfe053b"),
    ("Bromus secalinus", "cdc3e570-2d92-59ca-a377-43b40f5146cc"),
    ("Bromus hordeaceus", "7788d484-485d-5159-980a-69552b3151e7"),
    ("Bromus japonicus", "69caf1f7-c4d4-5db4-9d37-5d07fec8dd42"),
    ("Lolium temulentum", "32a540b6-50f1-58da-a94c-8b2947048273"),
    (
        "Solanum carolinense",
        "2c884474-2c18-5ef2-bfec-34e594ce28da",
    ),
    ("Solanum nigrum", "06a89dd8-ccde-5985-af56-ef583ca96100"),
    ("Solanum rostratum", "5bc9263a-eb4f-5878-9b71-fe981e3f5375"),
    (
        "Ambrosia artemisiifolia",
        "b4d8e3af-581c-5db4-bc26-ac211857ae7d",
    ),
    ("Ambrosia trifida", "86d6aab2-85ac-50c6-b5fa-aa378c525e32"),
    (
        "Ambrosia psilostachya",
        "d77efa48-fa95-51d4-b97a-0f4eaa12ce32",
    ),
];

// ---------------------------------------------------------------------------------------
// helpers

async fn scalar(store: &SqlStore, sql: &str) -> i64 {
    let db = store.connection();
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"));
    row.try_get_by_index::<i64>(0)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn count(store: &SqlStore, table: &str) -> i64 {
    scalar(store, &format!("SELECT COUNT(*) FROM {table}")).await
}

async fn counts(store: &SqlStore) -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for table in TABLES {
        counts.insert(table, count(store, table).await);
    }
    counts
}

/// The `is_top` flags of a box's candidates, by rank.
async fn top_flags(store: &SqlStore, box_id: Uuid) -> Vec<bool> {
    use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
    let db = store.connection();
    let query = Query::select()
        .column("is_top")
        .from("box_candidates")
        .and_where(Expr::col("box_id").eq(box_id))
        .order_by("rank", Order::Asc)
        .to_owned();
    db.query_all(&query)
        .await
        .expect("reading is_top")
        .into_iter()
        .map(|row| row.try_get::<bool>("", "is_top").expect("is_top"))
        .collect()
}

fn catalogue_json(version: &str, swin_version: &str) -> String {
    json!({
        "version": version,
        "date": "2026-11-22",
        "pipelines": [
            {
                "pipeline_name": "swin-transformer",
                "models": ["seed-detector", "swin"],
                "default": true,
                "version": swin_version,
                "description": "detects then classifies",
                "created_by": "tests",
                "creation_date": "2026-11-22",
                "job_name": "job",
                "dataset_description": "seeds",
                "accuracy": 0.9
            },
            {
                "pipeline_name": "test",
                "models": ["test-model"],
                "default": false,
                "version": "0.1.0",
                "dataset_description": "",
                "accuracy": null
            }
        ],
        "models": [
            {
                "model_name": "seed-detector",
                "kind": "seed_detector",
                "task": "object-detection",
                "endpoint": "https://example.invalid/detector",
                "api_key": "secret-1",
                "content_type": "application/json",
                "deployment_platform": "azureml-model-deployment",
                "version": "1",
                "dataset_description": "seeds",
                "accuracy": 0.8
            },
            {
                "model_name": "swin",
                "kind": "classifier",
                "task": "classification",
                "endpoint": "https://example.invalid/swin",
                "api_key": "secret-2",
                "content_type": "application/json",
                "deployment_platform": "azureml-model-deployment",
                "version": "3",
                "dataset_description": "seeds",
                "accuracy": null
            },
            {
                "model_name": "test-model",
                "kind": "test",
                "task": "object-detection",
                "version": "1",
                "dataset_description": "",
                "accuracy": null
            }
        ]
    })
    .to_string()
}

fn catalogue(version: &str, swin_version: &str) -> Catalogue {
    CatalogueDocument::from_json(&catalogue_json(version, swin_version))
        .and_then(|document| document.into_catalogue(&|s| Ok(s.to_owned())))
        .unwrap_or_else(|e| panic!("test catalogue: {e}"))
}

/// A registered user and a recorded pipeline to save inferences against.
struct Fixture {
    user_id: Uuid,
    pipeline_id: Uuid,
}

async fn fixture(store: &SqlStore) -> Fixture {
    let user = store
        .register("grower@example.org")
        .await
        .expect("register");
    let ids = store
        .record(&catalogue("0.1.4", "1.0.0"))
        .await
        .expect("record");
    Fixture {
        user_id: user.id,
        pipeline_id: ids.pipelines["swin-transformer"],
    }
}

fn time(seconds: i64, micros: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, micros * 1000)
        .single()
        .expect("a time")
}

fn candidate(label: &str, score: f64, seed: Option<&str>) -> NewCandidate {
    NewCandidate {
        id: Uuid::new_v4(),
        label: label.to_owned(),
        score,
        seed_id: seed.map(seed_id),
    }
}

fn inference(fixture: &Fixture, folder: &str) -> NewInference {
    let picture_id = Uuid::new_v4();
    let boxes = vec![
        NewBox {
            id: Uuid::new_v4(),
            position: 1,
            top_x: 5,
            top_y: 7,
            bottom_x: 120,
            bottom_y: 130,
            label: "Ambrosia trifida".to_owned(),
            score: 0.91,
            overlapping: false,
            candidates: vec![
                candidate("Ambrosia trifida", 0.91, Some("Ambrosia trifida")),
                candidate("Unheard-of weed", 0.05, None),
                candidate("Ambrosia psilostachya", 0.03, Some("Ambrosia psilostachya")),
            ],
            verification: None,
            drawn_by_person: false,
        },
        NewBox {
            id: Uuid::new_v4(),
            position: 2,
            top_x: 5,
            top_y: 7,
            bottom_x: 120,
            bottom_y: 130,
            label: "Brassica napus".to_owned(),
            score: 0.4,
            overlapping: true,
            candidates: vec![candidate("Brassica napus", 0.4, Some("Brassica napus"))],
            verification: None,
            drawn_by_person: false,
        },
        NewBox {
            id: Uuid::new_v4(),
            position: 3,
            top_x: 200,
            top_y: 210,
            bottom_x: 260,
            bottom_y: 299,
            label: "seed".to_owned(),
            score: 0.5,
            overlapping: false,
            candidates: vec![],
            verification: None,
            drawn_by_person: false,
        },
    ];
    NewInference {
        id: Uuid::new_v4(),
        user_id: fixture.user_id,
        pipeline_id: fixture.pipeline_id,
        picture: NewPicture {
            id: picture_id,
            user_id: fixture.user_id,
            container: fixture.user_id.to_string(),
            picture_set: folder.to_owned(),
            picture_set_id: Uuid::new_v4(),
            blob_key: format!("{}/{folder}/{picture_id}.png", fixture.user_id),
            sha256: "ab".repeat(32),
            content_type: "image/png".to_owned(),
            width: 640,
            height: 480,
        },
        result_blob_key: format!("{}/{folder}/{picture_id}.json", fixture.user_id),
        result: json!({
            "filename": "seeds.png",
            "totalBoxes": 3,
            "labelOccurrence": {"Ambrosia trifida": 1, "Brassica napus": 1, "seed": 1},
            "boxes": [{"box": {"topX": 5, "topY": 7}, "score": 0.91, "overlapping": false}],
            "models": [{"name": "seed-detector", "version": "1"}, {"name": "swin", "version": "3"}]
        }),
        boxes,
        created_at: time(1_795_000_000, 123_456),
    }
}

// ---------------------------------------------------------------------------------------
// the checks

pub async fn migrations_run_twice_are_a_no_op(store: &SqlStore) {
    let before = counts(store).await;
    store.migrate().await.expect("migrating again");
    store.migrate().await.expect("migrating a third time");
    assert_eq!(counts(store).await, before);
    assert_eq!(before["seeds"], 15);
    let applied = count(store, "seaql_migrations").await;
    assert_eq!(applied, Migrator::migrations().len() as i64);
    let pending = Migrator::get_pending_migrations(store.connection())
        .await
        .expect("pending migrations");
    assert!(
        pending.is_empty(),
        "{} migrations still pending",
        pending.len()
    );
}

pub async fn seeds_are_the_fifteen_species_under_fixed_ids(store: &SqlStore) {
    let seeds = store.list_seeds().await.expect("list_seeds");
    assert_eq!(seeds.len(), 15);
    let stored: BTreeMap<String, Uuid> = seeds.into_iter().map(|s| (s.name, s.id)).collect();
    let pinned: BTreeMap<String, Uuid> = PINNED_SEEDS
        .iter()
        .map(|(name, id)| ((*name).to_owned(), Uuid::parse_str(id).expect("a uuid")))
        .collect();
    assert_eq!(stored, pinned);
    for (name, id) in &stored {
        assert_eq!(seed_id(name), *id, "{name}");
    }
    // Listed by name.
    let names: Vec<String> = store
        .list_seeds()
        .await
        .expect("list_seeds")
        .into_iter()
        .map(|s| s.name)
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

pub async fn users_register_and_find(store: &SqlStore) {
    assert_eq!(
        store.find_by_email("ana@example.org").await.expect("find"),
        None
    );

    let before = Utc::now() - chrono::Duration::seconds(1);
    let ana = store.register("ana@example.org").await.expect("register");
    assert_eq!(ana.email, "ana@example.org");
    assert!(ana.registered_at >= before && ana.registered_at <= Utc::now());

    assert_eq!(
        store.find_by_email("ana@example.org").await.expect("find"),
        Some(ana.clone())
    );
    assert_eq!(
        store.find_by_id(ana.id).await.expect("find"),
        Some(ana.clone())
    );
    assert_eq!(store.find_by_id(Uuid::new_v4()).await.expect("find"), None);

    // Registering again returns the same user, unchanged.
    assert_eq!(
        store.register("ana@example.org").await.expect("register"),
        ana
    );

    // Emails are compared as given: the caller normalizes.
    let other = store.register("Ana@example.org").await.expect("register");
    assert_ne!(other.id, ana.id);
    assert_eq!(count(store, "users").await, 2);
}

pub async fn concurrent_registrations_of_one_email_give_one_user(store: &SqlStore) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.register("race@example.org").await })
        })
        .collect();
    let users: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("task").expect("register"))
        .collect();
    let first = &users[0];
    assert!(users.iter().all(|u| u == first), "{users:?}");
    assert_eq!(count(store, "users").await, 1);
}

pub async fn an_inference_reads_back_as_saved(store: &SqlStore) {
    let fixture = fixture(store).await;
    let saved = inference(&fixture, "field-1");
    store.save_inference(&saved).await.expect("save");

    let found = store
        .find_inference(saved.id)
        .await
        .expect("find")
        .expect("the saved inference");
    assert_eq!(found, saved);

    // Boxes by position, candidates by rank, the first candidate the top one.
    let positions: Vec<u32> = found.boxes.iter().map(|b| b.position).collect();
    assert_eq!(positions, [1, 2, 3]);
    assert_eq!(
        found.boxes[0].candidates[0].seed_id,
        Some(seed_id("Ambrosia trifida"))
    );
    assert_eq!(found.boxes[0].candidates[1].seed_id, None);
    assert_eq!(
        top_flags(store, saved.boxes[0].id).await,
        [true, false, false]
    );
    assert_eq!(top_flags(store, saved.boxes[1].id).await, [true]);
    assert!(top_flags(store, saved.boxes[2].id).await.is_empty());

    let counts = counts(store).await;
    assert_eq!(counts["picture_sets"], 1);
    assert_eq!(counts["pictures"], 1);
    assert_eq!(counts["inferences"], 1);
    assert_eq!(counts["inference_boxes"], 3);
    assert_eq!(counts["box_candidates"], 4);

    assert_eq!(
        store.find_inference(Uuid::new_v4()).await.expect("find"),
        None
    );
}

pub async fn a_picture_set_is_reused_by_later_pictures(store: &SqlStore) {
    let fixture = fixture(store).await;
    let first = inference(&fixture, "field-1");
    // The folder exists by the time of the second picture: the id proposed for a new
    // folder of that name is not used.
    let mut second = inference(&fixture, "field-1");
    let elsewhere = inference(&fixture, "field-2");
    for inference in [&first, &second, &elsewhere] {
        store.save_inference(inference).await.expect("save");
    }
    second.picture.picture_set_id = first.picture.picture_set_id;
    assert_eq!(count(store, "pictures").await, 3);
    assert_eq!(count(store, "picture_sets").await, 2);
    let sets_of_field_1 = scalar(
        store,
        "SELECT COUNT(DISTINCT picture_set_id) FROM pictures WHERE blob_key LIKE '%/field-1/%'",
    )
    .await;
    assert_eq!(sets_of_field_1, 1);
    for inference in [first, second, elsewhere] {
        let found = store.find_inference(inference.id).await.expect("find");
        assert_eq!(found, Some(inference));
    }
}

pub async fn a_save_with_a_duplicate_box_id_leaves_nothing(store: &SqlStore) {
    let fixture = fixture(store).await;
    let before = counts(store).await;
    let mut broken = inference(&fixture, "new-folder");
    broken.boxes[2].id = broken.boxes[1].id;

    let error = store
        .save_inference(&broken)
        .await
        .expect_err("a duplicate box id");
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(counts(store).await, before);
    assert_eq!(store.find_inference(broken.id).await.expect("find"), None);

    // The store still works afterwards.
    let good = inference(&fixture, "new-folder");
    store.save_inference(&good).await.expect("save");
    assert_eq!(
        store.find_inference(good.id).await.expect("find"),
        Some(good)
    );
}

pub async fn a_save_for_an_unknown_user_leaves_nothing(store: &SqlStore) {
    let fixture = fixture(store).await;
    let before = counts(store).await;
    let stranger = Fixture {
        user_id: Uuid::new_v4(),
        pipeline_id: fixture.pipeline_id,
    };
    let broken = inference(&stranger, "field-1");
    let error = store
        .save_inference(&broken)
        .await
        .expect_err("an unknown user");
    assert!(matches!(error, StoreError::Database(_)), "{error:?}");
    assert_eq!(counts(store).await, before);

    // A known user but an unknown pipeline fails late (at the inference row): still nothing.
    let broken = inference(
        &Fixture {
            user_id: fixture.user_id,
            pipeline_id: Uuid::new_v4(),
        },
        "field-1",
    );
    store
        .save_inference(&broken)
        .await
        .expect_err("an unknown pipeline");
    assert_eq!(counts(store).await, before);
}

pub async fn saving_an_inference_twice_is_a_conflict_and_leaves_the_first(store: &SqlStore) {
    let fixture = fixture(store).await;
    let saved = inference(&fixture, "field-1");
    store.save_inference(&saved).await.expect("save");
    let after_first = counts(store).await;

    let error = store
        .save_inference(&saved)
        .await
        .expect_err("saving twice");
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(counts(store).await, after_first);
    assert_eq!(
        store.find_inference(saved.id).await.expect("find"),
        Some(saved)
    );
}

async fn pipeline_model_names(store: &SqlStore, pipeline_id: Uuid) -> Vec<String> {
    use sea_orm::sea_query::{Expr, ExprTrait, JoinType, Order, Query};
    let query = Query::select()
        .column(("m", "name"))
        .from_as("pipeline_models", "pm")
        .join_as(
            JoinType::InnerJoin,
            "catalogue_models",
            "m",
            Expr::col(("m", "id")).equals(("pm", "model_id")),
        )
        .and_where(Expr::col(("pm", "pipeline_id")).eq(pipeline_id))
        .order_by(("pm", "position"), Order::Asc)
        .to_owned();
    store
        .connection()
        .query_all(&query)
        .await
        .expect("pipeline models")
        .into_iter()
        .map(|row| row.try_get::<String>("", "name").expect("name"))
        .collect()
}

fn assert_complete(ids: &RecordedIds) {
    let mut pipelines: Vec<&str> = ids.pipelines.keys().map(String::as_str).collect();
    pipelines.sort_unstable();
    assert_eq!(pipelines, ["swin-transformer", "test"]);
    let mut models: Vec<&str> = ids.models.keys().map(String::as_str).collect();
    models.sort_unstable();
    assert_eq!(models, ["seed-detector", "swin", "test-model"]);
}

pub async fn recording_a_catalogue_again_keeps_its_ids(store: &SqlStore) {
    let catalogue = catalogue("0.1.4", "1.0.0");
    let first = store.record(&catalogue).await.expect("record");
    assert_complete(&first);
    let counts_after_first = counts(store).await;

    let again = store.record(&catalogue).await.expect("record again");
    assert_eq!(again.pipelines, first.pipelines);
    assert_eq!(again.models, first.models);
    assert_eq!(counts(store).await, counts_after_first);

    // The same versions in a later catalogue keep their ids too.
    let later = store
        .record(&self::catalogue("0.1.5", "1.0.0"))
        .await
        .expect("record");
    assert_eq!(later.pipelines, first.pipelines);
    assert_eq!(later.models, first.models);

    assert_eq!(counts_after_first["catalogue_models"], 3);
    assert_eq!(counts_after_first["catalogue_pipelines"], 2);
    assert_eq!(counts_after_first["pipeline_models"], 3);
    assert_eq!(
        pipeline_model_names(store, first.pipelines["swin-transformer"]).await,
        ["seed-detector", "swin"]
    );
    assert_eq!(
        pipeline_model_names(store, first.pipelines["test"]).await,
        ["test-model"]
    );
}

pub async fn a_new_pipeline_version_gets_a_new_id(store: &SqlStore) {
    let first = store
        .record(&catalogue("0.1.4", "1.0.0"))
        .await
        .expect("record");
    let second = store
        .record(&catalogue("0.1.5", "1.1.0"))
        .await
        .expect("record");
    assert_complete(&second);
    assert_ne!(
        second.pipelines["swin-transformer"],
        first.pipelines["swin-transformer"]
    );
    assert_eq!(second.pipelines["test"], first.pipelines["test"]);
    assert_eq!(second.models, first.models);
    assert_eq!(count(store, "catalogue_pipelines").await, 3);
    assert_eq!(count(store, "pipeline_models").await, 5);
    // Both versions stay recorded, each with its models, so older inferences keep pointing
    // at the version they ran.
    assert_eq!(
        pipeline_model_names(store, first.pipelines["swin-transformer"]).await,
        ["seed-detector", "swin"]
    );
    assert_eq!(
        pipeline_model_names(store, second.pipelines["swin-transformer"]).await,
        ["seed-detector", "swin"]
    );
}

pub async fn the_chosen_catalogue_version_is_the_last_one_chosen(store: &SqlStore) {
    use pipeline::ports::{ChosenCatalogue, ChosenVersion};
    let chosen = |version: &str, configured: Option<&str>| {
        Some(ChosenCatalogue {
            version: version.into(),
            configured: configured.map(Into::into),
        })
    };
    assert_eq!(store.chosen().await.unwrap(), None);
    // An administrator's choice before any configuration was seen.
    store.choose("0.9.0", None).await.unwrap();
    assert_eq!(store.chosen().await.unwrap(), chosen("0.9.0", None));
    store.choose("1.0.0", Some("1.0.0".into())).await.unwrap();
    assert_eq!(
        store.chosen().await.unwrap(),
        chosen("1.0.0", Some("1.0.0"))
    );
    // The admin API changes the version, not the configuration's.
    store.choose("1.2.0", None).await.unwrap();
    assert_eq!(
        store.chosen().await.unwrap(),
        chosen("1.2.0", Some("1.0.0"))
    );
    store.choose("1.1.0", Some("1.1.0".into())).await.unwrap();
    assert_eq!(
        store.chosen().await.unwrap(),
        chosen("1.1.0", Some("1.1.0"))
    );
}
