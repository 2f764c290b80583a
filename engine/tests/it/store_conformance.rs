//! The storage conformance suite (`objectos_engine::store::conformance`)
//! run against the backends in the engine's own crate.

use std::sync::Arc;

use objectos_engine::store::{MemoryStore, SqliteStore, Store, sqlite::Durability};

// One in-memory store is shared by cloning its handle.
objectos_engine::conformance!(memory, (Arc::new(MemoryStore::new()) as Arc<dyn Store>, ()), {
    let store = Arc::new(MemoryStore::new()) as Arc<dyn Store>;
    (store.clone(), store, ())
});
objectos_engine::conformance!(
    sqlite,
    {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("objectos.db"), Durability::Normal).unwrap();
        (Arc::new(store) as Arc<dyn Store>, dir)
    },
    {
        // Two stores on one file: each its own writer and connections.
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Arc::new(SqliteStore::open(dir.path().join("objectos.db"), Durability::Normal).unwrap())
                as Arc<dyn Store>
        };
        let first = open();
        (first, open(), dir)
    }
);
