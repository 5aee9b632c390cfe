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
  {
    description: "VM records, install identity, NIC states quiesced and failed",
    sql: `
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
      ) STRICT;
      CREATE TABLE vms (
        vm_id      TEXT PRIMARY KEY NOT NULL CHECK (vm_id <> ''),
        netns_path TEXT NOT NULL,
        network    TEXT,
        quiesced   INTEGER NOT NULL DEFAULT 0 CHECK (quiesced IN (0, 1)),
        deleting   INTEGER NOT NULL DEFAULT 0 CHECK (deleting IN (0, 1)),
        created_at TEXT NOT NULL
      ) STRICT;
      INSERT INTO vms (vm_id, netns_path, network, quiesced, deleting, created_at)
        SELECT n.vm_id, n.netns_path, n.network, 0, 0, n.created_at FROM nics n
        WHERE n.nic_index = (SELECT MIN(m.nic_index) FROM nics m
                             WHERE m.vm_id = n.vm_id);
      CREATE TABLE nics_v3 (
        id              TEXT PRIMARY KEY NOT NULL,
        vm_id           TEXT NOT NULL REFERENCES vms (vm_id),
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
        state           TEXT NOT NULL CHECK (state IN
                          ('adding', 'active', 'quiesced', 'deleting', 'failed')),
        error           TEXT,
        created_at      TEXT NOT NULL,
        UNIQUE (vm_id, nic_index)
      ) STRICT;
      INSERT INTO nics_v3 SELECT id, vm_id, nic_index, if_name, tap, mac,
        network, netns_path, num_queues, queue_size, mtu, ips_json, dns_json,
        cni_result_json, cni_config_json, container_id, state, NULL, created_at
        FROM nics;
      DROP TABLE nics;
      ALTER TABLE nics_v3 RENAME TO nics;
      -- A MAC is unique within an install: looked up before every add.
      CREATE INDEX nics_by_mac ON nics (mac);
      -- A database that holds records gets its install id here; a new one
      -- gets it when the provider initializes it.
      INSERT INTO meta (key, value)
        SELECT 'install_id', lower(hex(randomblob(4)))
        WHERE EXISTS (SELECT 1 FROM vms);
    `,
  },
  {
    description: "warm pool slots, announced NICs, unique MACs",
    sql: `
      -- A slot of the warm pool: a pre-wired VM record whose NIC waits for
      -- a VM to claim it. slot names its pool ("network/queues");
      -- claim_vm is the VM a claim cut short was handing it to.
      ALTER TABLE vms ADD COLUMN slot TEXT;
      ALTER TABLE vms ADD COLUMN claim_vm TEXT;
      -- The NIC's afterAdd hooks ran: its removal is announced too, also
      -- when a crash cut the add or the teardown short.
      ALTER TABLE nics ADD COLUMN announced INTEGER NOT NULL DEFAULT 0
        CHECK (announced IN (0, 1));
      UPDATE nics SET announced = 1 WHERE state IN ('active', 'quiesced');
      -- One MAC, one NIC, within an install, even between two processes.
      DROP INDEX nics_by_mac;
      CREATE UNIQUE INDEX nics_by_mac ON nics (mac) WHERE mac <> '';
    `,
  },
  {
    description: "the event log",
    sql: `
      -- One row per operation (docs/events.md); trimmed by age and count.
      CREATE TABLE events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        time        TEXT NOT NULL,
        op          TEXT NOT NULL,
        vm_id       TEXT,
        nic_index   INTEGER,
        outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'failed')),
        error       TEXT,
        duration_ms REAL NOT NULL,
        phases_json TEXT NOT NULL,
        trace_id    TEXT NOT NULL,
        traceparent TEXT NOT NULL
      ) STRICT;
      CREATE INDEX events_by_vm ON events (vm_id, id);
      CREATE INDEX events_by_time ON events (time);
    `,
  },
  {
    description: "clone NICs: the guest's identity beside the network's",
    sql: `
      -- A clone NIC's guest identity (its snapshot's MAC, IP, routes) as
      -- JSON; NULL for a NIC whose guest uses the network's identity.
      ALTER TABLE nics ADD COLUMN guest_json TEXT;
    `,
  },
  {
    description: "NIC policy and CNI capability args",
    sql: `
      -- The NIC's policy on its TAP path (docs/policy.md) as JSON: what the
      -- add call or \`vmnic policy\` asked for and what is in effect; NULL
      -- for a NIC made before policies (its redirects pass everything).
      ALTER TABLE nics ADD COLUMN policy_json TEXT;
      -- The CNI capability args its ADD was given (portMappings,
      -- bandwidth, dns) as JSON, for DEL and CHECK; NULL for none.
      ALTER TABLE nics ADD COLUMN capability_args_json TEXT;
    `,
  },
];

/** The schema version this build writes. */
export const SCHEMA_VERSION: number = MIGRATIONS.length;
