"""The SQLite schema as deploybot wrote it before Alembic (versioned by `PRAGMA user_version`).

A store written then is brought up to version 7 with the rest of these scripts and stamped
with the baseline revision (`r0001`), whose tables are the same; from there Alembic runs.
Frozen: never edit, add an Alembic revision instead.
"""

LEGACY_VERSION = 7

LEGACY: list[str] = [
    # 1: SAL, its per-sink deliveries, the announcement outbox, locks
    """
    CREATE TABLE sal (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        component TEXT,
        env TEXT,
        action TEXT NOT NULL,
        from_version TEXT,
        to_version TEXT,
        commit_sha TEXT,
        mr_url TEXT,
        tasks TEXT NOT NULL DEFAULT '',
        result TEXT,
        log_url TEXT,
        message TEXT NOT NULL,
        sal_project TEXT
    );
    CREATE INDEX sal_component ON sal(component, env, id);
    CREATE TABLE sal_delivery (
        entry_id INTEGER NOT NULL REFERENCES sal(id),
        sink TEXT NOT NULL,
        delivered_at TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        PRIMARY KEY (entry_id, sink)
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        adapter TEXT,
        room TEXT NOT NULL,
        text TEXT NOT NULL,
        key TEXT,
        final INTEGER NOT NULL DEFAULT 0,
        priority INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        sent_at REAL
    );
    CREATE INDEX outbox_pending ON outbox(sent_at, room, priority, id);
    CREATE TABLE locks (
        component TEXT NOT NULL,
        env TEXT NOT NULL,
        owner TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (component, env)
    );
    """,
    # 2: GitLab webhook events (persisted before the 200) and pipeline states
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        dedupe_key TEXT UNIQUE,
        kind TEXT NOT NULL,
        body BLOB NOT NULL,
        received_at REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        error TEXT
    );
    CREATE INDEX events_pending ON events(status, id);
    CREATE TABLE pipelines (
        project TEXT NOT NULL,
        pipeline_id INTEGER NOT NULL,
        component TEXT,
        ref TEXT,
        sha TEXT,
        status TEXT,
        stage TEXT,
        version TEXT,
        url TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (project, pipeline_id)
    );
    CREATE INDEX pipelines_sha ON pipelines(sha);
    """,
    # 3: webhook processing (issue 4): the last announced state of control-repo MRs
    """
    CREATE TABLE merge_requests (
        project TEXT NOT NULL,
        iid INTEGER NOT NULL,
        component TEXT,
        state TEXT NOT NULL,
        summary TEXT NOT NULL,
        url TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (project, iid)
    );
    """,
    # 4: reserved for control-repo bumps (issue 5)
    "",
    # 5: deploys (issue 6): one row per apply/rollback, its state written at every step
    """
    CREATE TABLE deploys (
        id INTEGER PRIMARY KEY,
        component TEXT NOT NULL,
        env TEXT NOT NULL,
        action TEXT NOT NULL,
        version TEXT,
        from_version TEXT,
        commit_sha TEXT,
        mr_url TEXT,
        actor TEXT NOT NULL,
        tasks TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        result TEXT,
        log_path TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL,
        finished_at REAL,
        error TEXT
    );
    CREATE INDEX deploys_target ON deploys(component, env, id);
    CREATE INDEX deploys_state ON deploys(state);
    """,
    # 6: monitor alerts (issue 7; bot/alerts.py) and when a live version was first seen
    """
    CREATE TABLE alerts (
        kind TEXT NOT NULL,
        component TEXT NOT NULL,
        env TEXT NOT NULL,
        detail TEXT NOT NULL,
        text TEXT NOT NULL,
        first_seen REAL NOT NULL,
        since REAL,
        raised_at REAL,
        reminded_at REAL,
        PRIMARY KEY (kind, component, env, detail)
    );
    CREATE TABLE live_seen (
        component TEXT NOT NULL,
        env TEXT NOT NULL,
        version TEXT NOT NULL,
        first_seen REAL NOT NULL,
        PRIMARY KEY (component, env)
    );
    """,
    # 7: a short form of an announcement, used when a backlog is packed into summary lines
    "ALTER TABLE outbox ADD COLUMN short TEXT",
]
