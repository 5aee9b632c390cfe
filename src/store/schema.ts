/**
 * The store's schema as an ordered list of migrations. Migration `i` takes
 * the database from `PRAGMA user_version = i` to `i + 1`; append new ones,
 * never edit a released one.
 *
 * @module
 */

/** One schema step, applied inside a transaction. */
export interface Migration {
  /** What the step does, for error messages. */
  description: string;
  /** The SQL run by `exec`. */
  sql: string;
}

/** All migrations, in order. The schema version is `MIGRATIONS.length`. */
export const MIGRATIONS: readonly Migration[] = [
  {
    description: "create nics",
    sql: `
      CREATE TABLE nics (
        id              TEXT PRIMARY KEY NOT NULL,
        vm_id           TEXT NOT NULL CHECK (vm_id <> ''),
        nic_index       INTEGER NOT NULL CHECK (nic_index >= 0),
        if_name         TEXT NOT NULL,
        tap             TEXT NOT NULL,
        mac             TEXT NOT NULL,
        network         TEXT NOT NULL,
        netns_path      TEXT NOT NULL,
        num_queues      INTEGER NOT NULL,
        queue_size      INTEGER NOT NULL,
        mtu             INTEGER NOT NULL,
        ips_json        TEXT NOT NULL,
        dns_json        TEXT NOT NULL,
        cni_result_json TEXT NOT NULL,
        cni_config_json TEXT NOT NULL,
        container_id    TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('adding', 'active', 'deleting')),
        created_at      TEXT NOT NULL,
        -- Also the index behind every per-VM lookup and the list order.
        UNIQUE (vm_id, nic_index)
      ) STRICT;
    `,
  },
  {
    description: "cache plugin VERSION answers",
    sql: `
      CREATE TABLE plugin_versions (
        plugin_key TEXT PRIMARY KEY NOT NULL,
        info_json  TEXT NOT NULL
      ) STRICT;
    `,
  },
];

/** The schema version this build writes. */
export const SCHEMA_VERSION: number = MIGRATIONS.length;
