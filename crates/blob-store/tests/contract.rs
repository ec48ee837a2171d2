//! The `BlobStore` contract, written once and run against every backend: memory, local
//! disk (a temporary folder) and Azure Blob (the real Azurite emulator, via
//! `test-support`; it needs `TEST_AZURITE_URL` and `TEST_AZURITE_CONTAINER`).

use std::collections::BTreeSet;
use std::sync::Arc;

use blob_store::{BlobError, BlobKey, BlobSettings, BlobStore, ObjectBlobStore, open};
use bytes::Bytes;

/// A store under test, with whatever must live as long as it (a temporary folder).
struct Subject {
    store: Arc<dyn BlobStore>,
    _guard: Option<tempfile::TempDir>,
}

fn key(text: &str) -> BlobKey {
    BlobKey::parse(text).unwrap()
}

/// Every byte value, and no valid UTF-8.
fn binary() -> Bytes {
    let mut bytes: Vec<u8> = (0..=255u8).collect();
    bytes.extend((0..=255u8).rev());
    bytes.extend([0xff, 0xfe, 0x00, 0x00, 0xc3]);
    Bytes::from(bytes)
}

/// The contract. Each function gets a fresh, empty store.
mod contract {
    use super::*;

    pub async fn put_then_get_returns_the_same_binary_bytes(store: Arc<dyn BlobStore>) {
        let k = key("pictures/user-1/seed.bin");
        store.put(&k, binary()).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap(), binary());

        let empty = key("pictures/user-1/empty");
        store.put(&empty, Bytes::new()).await.unwrap();
        assert_eq!(store.get(&empty).await.unwrap(), Bytes::new());
    }

    pub async fn put_replaces_what_was_there(store: Arc<dyn BlobStore>) {
        let k = key("a/result.json");
        store
            .put(&k, Bytes::from_static(b"first, longer"))
            .await
            .unwrap();
        store.put(&k, Bytes::from_static(b"second")).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap(), Bytes::from_static(b"second"));
        let listed = store.list("a").await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].size, 6);
    }

    pub async fn put_new_writes_a_missing_key_and_refuses_an_existing_one(
        store: Arc<dyn BlobStore>,
    ) {
        let k = key("a/b/new.png");
        store.put_new(&k, Bytes::from_static(b"one")).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap(), Bytes::from_static(b"one"));

        match store.put_new(&k, Bytes::from_static(b"two")).await {
            Err(BlobError::AlreadyExists(existing)) => assert_eq!(existing, k),
            other => panic!("expected AlreadyExists({k}), got {other:?}"),
        }
        assert_eq!(store.get(&k).await.unwrap(), Bytes::from_static(b"one"));

        // Also over a blob written by `put`.
        let p = key("a/b/put.png");
        store.put(&p, Bytes::from_static(b"put")).await.unwrap();
        assert!(matches!(
            store.put_new(&p, Bytes::from_static(b"new")).await,
            Err(BlobError::AlreadyExists(_))
        ));
        assert_eq!(store.get(&p).await.unwrap(), Bytes::from_static(b"put"));
    }

    pub async fn of_8_concurrent_put_new_exactly_one_wins(store: Arc<dyn BlobStore>) {
        let k = key("race/winner");
        let start = Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let (store, k, start) = (Arc::clone(&store), k.clone(), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    let body = Bytes::from(vec![i; 1000 + usize::from(i)]);
                    (i, store.put_new(&k, body).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (i, Ok(())) => winners.push(i),
                (_, Err(BlobError::AlreadyExists(existing))) => assert_eq!(existing, k),
                (i, Err(e)) => panic!("writer {i}: expected Ok or AlreadyExists, got {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let winner = winners[0];
        assert_eq!(
            store.get(&k).await.unwrap(),
            Bytes::from(vec![winner; 1000 + usize::from(winner)]),
            "the blob holds the winner's bytes"
        );
    }

    pub async fn get_of_a_missing_key_is_not_found(store: Arc<dyn BlobStore>) {
        let k = key("nothing/here.jpg");
        match store.get(&k).await {
            Err(BlobError::NotFound(missing)) => assert_eq!(missing, k),
            other => panic!("expected NotFound({k}), got {other:?}"),
        }
        // A "folder" is not a blob either.
        store.put(&key("folder/inside"), binary()).await.unwrap();
        assert!(matches!(
            store.get(&key("folder")).await,
            Err(BlobError::NotFound(_))
        ));
    }

    pub async fn delete_then_get_is_not_found(store: Arc<dyn BlobStore>) {
        let k = key("d/picture.jpg");
        let other = key("d/other.jpg");
        store.put(&k, binary()).await.unwrap();
        store.put(&other, binary()).await.unwrap();
        store.delete(&k).await.unwrap();
        assert!(matches!(store.get(&k).await, Err(BlobError::NotFound(_))));
        assert_eq!(store.get(&other).await.unwrap(), binary(), "only one went");
        let left: Vec<_> = store.list("d").await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].key, other);
        // The key may be written again, even with put_new.
        store
            .put_new(&k, Bytes::from_static(b"again"))
            .await
            .unwrap();
        assert_eq!(store.get(&k).await.unwrap(), Bytes::from_static(b"again"));
    }

    pub async fn delete_of_a_missing_key_is_ok(store: Arc<dyn BlobStore>) {
        store.delete(&key("never/written")).await.unwrap();
        store.delete(&key("single")).await.unwrap();
        let k = key("twice/deleted");
        store.put(&k, binary()).await.unwrap();
        store.delete(&k).await.unwrap();
        store.delete(&k).await.unwrap();
    }

    pub async fn list_returns_only_the_prefix_sorted_with_sizes(store: Arc<dyn BlobStore>) {
        for (k, size) in [
            ("users/7/b.jpg", 3),
            ("users/7/a.jpg", 10),
            ("users/7/sub/deeper/c.json", 0),
            ("users/7/sub/a.json", 1),
            ("users/70/x.jpg", 5),
            ("users/7b", 4),
            ("users/8/a.jpg", 2),
            ("other", 1),
        ] {
            store
                .put(&key(k), Bytes::from(vec![7u8; size]))
                .await
                .unwrap();
        }
        let before = chrono::Utc::now() - chrono::Duration::minutes(10);
        let after = chrono::Utc::now() + chrono::Duration::minutes(10);

        let listed = store.list("users/7").await.unwrap();
        let got: Vec<(&str, u64)> = listed.iter().map(|b| (b.key.as_str(), b.size)).collect();
        assert_eq!(
            got,
            vec![
                ("users/7/a.jpg", 10),
                ("users/7/b.jpg", 3),
                ("users/7/sub/a.json", 1),
                ("users/7/sub/deeper/c.json", 0),
            ]
        );
        for blob in &listed {
            assert!(
                blob.last_modified > before && blob.last_modified < after,
                "{blob:?}"
            );
        }

        // Slashes at either end change nothing.
        assert_eq!(store.list("/users/7/").await.unwrap(), listed);

        let all: Vec<String> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.key.to_string())
            .collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        assert_eq!(all.len(), 8, "{all:?}");

        assert!(store.list("users/9").await.unwrap().is_empty());
        assert!(store.list("users/7/a").await.unwrap().is_empty());

        // A blob whose key is the prefix itself starts with the prefix's segments.
        let exact = store.list("users/7/b.jpg").await.unwrap();
        assert_eq!(exact.len(), 1, "{exact:?}");
        assert_eq!((exact[0].key.as_str(), exact[0].size), ("users/7/b.jpg", 3));
    }

    pub async fn keys_with_spaces_unicode_and_odd_characters_round_trip(store: Arc<dyn BlobStore>) {
        let keys = [
            "users/Jean Dupont/my seed photo (1).jpg",
            "users/Jean Dupont/graines de Brassica napus été 2024.png",
            "users/Jean Dupont/種子/ünïcödé 🌱.json",
            "users/Jean Dupont/odd #1 100% [a] {b} ~c `d` ^e |f| <g> \"h\" ?i *j",
            "users/Jean Dupont/upload#123",
            "users/Jean Dupont/%41 stays %41",
            "users/Jean Dupont/.hidden/a..b/...",
        ];
        for (i, k) in keys.iter().enumerate() {
            let body = Bytes::from(format!("blob {i}"));
            store.put(&key(k), body.clone()).await.unwrap();
            assert_eq!(store.get(&key(k)).await.unwrap(), body, "{k}");
        }
        let listed: BTreeSet<String> = store
            .list("users/Jean Dupont")
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.key.to_string())
            .collect();
        let expected: BTreeSet<String> = keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(listed, expected);

        let unicode_folder = store.list("users/Jean Dupont/種子").await.unwrap();
        assert_eq!(unicode_folder.len(), 1);
        assert_eq!(
            unicode_folder[0].key.as_str(),
            "users/Jean Dupont/種子/ünïcödé 🌱.json"
        );

        for k in keys {
            store.delete(&key(k)).await.unwrap();
            assert!(matches!(
                store.get(&key(k)).await,
                Err(BlobError::NotFound(_))
            ));
        }
        assert!(store.list("users").await.unwrap().is_empty());
    }
}

/// One `#[tokio::test]` per contract function, in a module per backend.
macro_rules! contract_suite {
    ($backend:ident, $subject:expr) => {
        mod $backend {
            use super::*;
            contract_suite!(@tests $subject;
                put_then_get_returns_the_same_binary_bytes,
                put_replaces_what_was_there,
                put_new_writes_a_missing_key_and_refuses_an_existing_one,
                of_8_concurrent_put_new_exactly_one_wins,
                get_of_a_missing_key_is_not_found,
                delete_then_get_is_not_found,
                delete_of_a_missing_key_is_ok,
                list_returns_only_the_prefix_sorted_with_sizes,
                keys_with_spaces_unicode_and_odd_characters_round_trip,
            );
        }
    };
    (@tests $subject:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let subject: Subject = $subject;
                contract::$name(Arc::clone(&subject.store)).await;
            }
        )+
    };
}

fn memory() -> Subject {
    Subject {
        store: Arc::new(open(&BlobSettings::Memory).unwrap()),
        _guard: None,
    }
}

fn local_disk() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let settings = BlobSettings::LocalDisk {
        root: dir.path().join("blobs"),
    };
    Subject {
        store: Arc::new(open(&settings).unwrap()),
        _guard: Some(dir),
    }
}

fn azurite() -> Subject {
    Subject {
        store: Arc::new(ObjectBlobStore::new(test_support::azurite_store())),
        _guard: None,
    }
}

contract_suite!(memory, memory());
contract_suite!(local_disk, local_disk());
contract_suite!(azurite, azurite());
