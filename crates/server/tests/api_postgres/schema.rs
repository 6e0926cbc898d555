//! The two backends' migrations describe one schema: after migrating a
//! fresh SQLite file and a fresh PostgreSQL database, the live schemas,
//! read back by introspection, must hold the same tables, columns (name,
//! type up to the dialect's spelling, nullability), primary keys, unique
//! constraints, indexes, foreign keys and triggers. Column defaults and
//! CHECK constraints are not compared: SQLite keeps those only as SQL text.

use std::collections::BTreeSet;

use lanrage_server::store::{PgSettings, PostgresStore, SqliteStore, Store};
use sqlx::{
    Connection, Row, SqlSafeStr,
    migrate::{Migration, MigrationType, Migrator},
};

use crate::helpers::ScratchDatabase;

/// One fact about a schema, spelled the same for both backends.
type Facts = BTreeSet<String>;

/// Tables the migrator keeps for itself, on either side.
fn is_bookkeeping(table: &str) -> bool {
    table.starts_with("_sqlx") || table.starts_with("sqlite_")
}

/// A column type as the other dialect would store it: SQLite has integers
/// of one width and no boolean type (TRUE is 1).
fn normalized_type(declared: &str) -> String {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "smallint" | "int" | "boolean" => "integer".into(),
        "text" | "character varying" => "text".into(),
        other => other.into(),
    }
}

fn nullability(not_null: bool) -> &'static str {
    if not_null { "not null" } else { "null" }
}

async fn sqlite_facts(url: &str) -> Facts {
    let mut db = sqlx::SqliteConnection::connect(url).await.unwrap();
    let mut facts = Facts::new();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut db)
            .await
            .unwrap();
    for table in tables.iter().filter(|t| !is_bookkeeping(t)) {
        facts.insert(format!("table {table}"));
        let columns = sqlx::query(
            "SELECT name, type, \"notnull\" AS not_null, pk FROM pragma_table_info(?) ORDER BY pk",
        )
        .bind(table)
        .fetch_all(&mut db)
        .await
        .unwrap();
        let mut primary_key = Vec::new();
        for column in &columns {
            let name: String = column.get("name");
            let declared: String = column.get("type");
            let pk: i64 = column.get("pk");
            // An INTEGER PRIMARY KEY is the rowid: never NULL, whatever
            // the pragma says.
            let rowid = pk > 0 && declared.eq_ignore_ascii_case("integer");
            let not_null = column.get::<i64, _>("not_null") != 0 || rowid;
            facts.insert(format!(
                "column {table}.{name} {} {}",
                normalized_type(&declared),
                nullability(not_null)
            ));
            if pk > 0 {
                primary_key.push(name);
            }
        }
        facts.insert(format!("primary key {table} ({})", primary_key.join(", ")));
        let indexes =
            sqlx::query("SELECT name, \"unique\" AS is_unique, origin FROM pragma_index_list(?)")
                .bind(table)
                .fetch_all(&mut db)
                .await
                .unwrap();
        for index in &indexes {
            let name: String = index.get("name");
            let origin: String = index.get("origin");
            let unique = index.get::<i64, _>("is_unique") != 0;
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
                    .bind(&name)
                    .fetch_all(&mut db)
                    .await
                    .unwrap();
            let columns = columns.join(", ");
            match origin.as_str() {
                // Already stated as the primary key.
                "pk" => {}
                "u" => {
                    facts.insert(format!("unique {table} ({columns})"));
                }
                _ => {
                    let kind = if unique { "unique index" } else { "index" };
                    facts.insert(format!("{kind} {name} on {table} ({columns})"));
                }
            }
        }
        let keys = sqlx::query(
            "SELECT \"table\" AS target, \"from\" AS source, \"to\" AS target_column, on_delete \
             FROM pragma_foreign_key_list(?)",
        )
        .bind(table)
        .fetch_all(&mut db)
        .await
        .unwrap();
        for key in &keys {
            facts.insert(format!(
                "foreign key {table}.{} -> {}.{} on delete {}",
                key.get::<String, _>("source"),
                key.get::<String, _>("target"),
                key.get::<String, _>("target_column"),
                key.get::<String, _>("on_delete").to_ascii_lowercase()
            ));
        }
    }
    let triggers: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            .fetch_all(&mut db)
            .await
            .unwrap();
    facts.extend(triggers.into_iter().map(|name| format!("trigger {name}")));
    facts
}

async fn postgres_facts(url: &str) -> Facts {
    let mut db = sqlx::PgConnection::connect(url).await.unwrap();
    let mut facts = Facts::new();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    for table in tables.iter().filter(|t| !is_bookkeeping(t)) {
        facts.insert(format!("table {table}"));
    }
    let columns = sqlx::query(
        "SELECT table_name::text AS table_name, column_name::text AS column_name, \
         data_type::text AS data_type, is_nullable::text AS is_nullable \
         FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    for column in &columns {
        let table: String = column.get("table_name");
        if is_bookkeeping(&table) {
            continue;
        }
        facts.insert(format!(
            "column {table}.{} {} {}",
            column.get::<String, _>("column_name"),
            normalized_type(&column.get::<String, _>("data_type")),
            nullability(column.get::<String, _>("is_nullable") == "NO")
        ));
    }
    let indexes = sqlx::query(
        "SELECT t.relname::text AS table_name, i.relname::text AS index_name, \
         ix.indisunique AS is_unique, ix.indisprimary AS is_primary, \
         EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid) AS from_constraint, \
         ARRAY(SELECT a.attname::text FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
               JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.ord) AS columns \
         FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = 'public'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    for index in &indexes {
        let table: String = index.get("table_name");
        if is_bookkeeping(&table) {
            continue;
        }
        let name: String = index.get("index_name");
        let columns = index.get::<Vec<String>, _>("columns").join(", ");
        let unique: bool = index.get("is_unique");
        if index.get("is_primary") {
            facts.insert(format!("primary key {table} ({columns})"));
        } else if index.get("from_constraint") {
            facts.insert(format!("unique {table} ({columns})"));
        } else {
            let kind = if unique { "unique index" } else { "index" };
            facts.insert(format!("{kind} {name} on {table} ({columns})"));
        }
    }
    let keys = sqlx::query(
        "SELECT s.relname::text AS source_table, sa.attname::text AS source, \
         t.relname::text AS target, ta.attname::text AS target_column, \
         CASE c.confdeltype WHEN 'c' THEN 'cascade' WHEN 'n' THEN 'set null' \
              WHEN 'd' THEN 'set default' WHEN 'r' THEN 'restrict' ELSE 'no action' END AS on_delete \
         FROM pg_constraint c JOIN pg_class s ON s.oid = c.conrelid \
         JOIN pg_class t ON t.oid = c.confrelid \
         JOIN pg_namespace n ON n.oid = s.relnamespace \
         JOIN pg_attribute sa ON sa.attrelid = s.oid AND sa.attnum = c.conkey[1] \
         JOIN pg_attribute ta ON ta.attrelid = t.oid AND ta.attnum = c.confkey[1] \
         WHERE c.contype = 'f' AND n.nspname = 'public'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    for key in &keys {
        facts.insert(format!(
            "foreign key {}.{} -> {}.{} on delete {}",
            key.get::<String, _>("source_table"),
            key.get::<String, _>("source"),
            key.get::<String, _>("target"),
            key.get::<String, _>("target_column"),
            key.get::<String, _>("on_delete")
        ));
    }
    let triggers: Vec<String> =
        sqlx::query_scalar("SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal")
            .fetch_all(&mut db)
            .await
            .unwrap();
    facts.extend(triggers.into_iter().map(|name| format!("trigger {name}")));
    facts
}

#[tokio::test]
async fn both_backends_migrate_to_the_same_schema() {
    let folder = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", folder.path().join("schema.db").display());
    SqliteStore::open(&sqlite_url).await.unwrap().close().await;
    let postgres = ScratchDatabase::create().await;
    PostgresStore::open(&postgres.url, PgSettings { pool_size: 2 })
        .await
        .unwrap()
        .close()
        .await;

    let sqlite = sqlite_facts(&sqlite_url).await;
    let postgres = postgres_facts(&postgres.url).await;
    // Not vacuous: every table of the schema was read on both sides.
    for table in [
        "tokens",
        "parties",
        "members",
        "party_events",
        "signals",
        "relays",
        "cleanup_lease",
    ] {
        assert!(sqlite.contains(&format!("table {table}")), "{sqlite:#?}");
    }
    assert!(
        postgres.contains("column signals.delivered integer not null"),
        "{postgres:#?}"
    );
    let only_sqlite: Vec<_> = sqlite.difference(&postgres).collect();
    let only_postgres: Vec<_> = postgres.difference(&sqlite).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "the schemas drifted apart\nonly in SQLite: {only_sqlite:#?}\nonly in PostgreSQL: {only_postgres:#?}"
    );
}

/// The migrations a release before the storage core applied, as it
/// applied them (sqlx checks their checksums on every later start).
fn before_the_core(steps: &[&'static str]) -> Migrator {
    Migrator::with_migrations(
        (1..)
            .zip(steps)
            .map(|(version, sql)| {
                Migration::new(
                    version,
                    format!("step {version}").into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Databases created before the storage core upgrade to the schema a
/// fresh database gets, on both backends.
#[tokio::test]
async fn databases_from_before_the_core_upgrade_to_the_same_schema() {
    let folder = tempfile::tempdir().unwrap();
    let fresh_url = format!("sqlite://{}", folder.path().join("fresh.db").display());
    SqliteStore::open(&fresh_url).await.unwrap().close().await;
    let fresh = sqlite_facts(&fresh_url).await;

    let old_url = format!("sqlite://{}", folder.path().join("old.db").display());
    let options: sqlx::sqlite::SqliteConnectOptions = old_url.parse().unwrap();
    let mut old = sqlx::SqliteConnection::connect_with(&options.create_if_missing(true))
        .await
        .unwrap();
    before_the_core(&[
        include_str!("../../migrations/sqlite/0001_init.sql"),
        include_str!("../../migrations/sqlite/0002_events_outlive_parties.sql"),
        include_str!("../../migrations/sqlite/0003_fewer_statements.sql"),
        include_str!("../../migrations/sqlite/0004_signal_queues_per_sender.sql"),
    ])
    .run(&mut old)
    .await
    .unwrap();
    old.close().await.unwrap();
    SqliteStore::open(&old_url).await.unwrap().close().await;
    assert_eq!(sqlite_facts(&old_url).await, fresh);

    let old = ScratchDatabase::create().await;
    let mut db = sqlx::PgConnection::connect(&old.url).await.unwrap();
    before_the_core(&[
        include_str!("../../migrations/postgres/0001_init.sql"),
        include_str!("../../migrations/postgres/0002_signal_queues_per_sender.sql"),
    ])
    .run(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();
    PostgresStore::open(&old.url, PgSettings { pool_size: 2 })
        .await
        .unwrap()
        .close()
        .await;
    let upgraded = postgres_facts(&old.url).await;
    let only_fresh: Vec<_> = fresh.difference(&upgraded).collect();
    let only_upgraded: Vec<_> = upgraded.difference(&fresh).collect();
    assert!(
        only_fresh.is_empty() && only_upgraded.is_empty(),
        "an upgraded PostgreSQL database differs\nonly in a fresh one: {only_fresh:#?}\nonly in the upgraded one: {only_upgraded:#?}"
    );
}
