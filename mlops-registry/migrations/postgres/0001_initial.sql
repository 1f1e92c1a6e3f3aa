-- The registry's first schema (PostgreSQL). Times are microseconds since the Unix epoch, UTC;
-- maps and structured values are JSON text.
CREATE TABLE registered_models (
    name           TEXT PRIMARY KEY,
    description    TEXT,
    tags           TEXT NOT NULL,
    latest_version BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- The last version number given per name, kept when a model is deleted so that a
-- re-created model never reuses a number (nor the artifact paths that go with it).
CREATE TABLE model_sequences (
    name         TEXT PRIMARY KEY,
    last_version BIGINT NOT NULL
);

CREATE TABLE model_versions (
    name           TEXT NOT NULL REFERENCES registered_models (name) ON DELETE CASCADE,
    version        BIGINT NOT NULL,
    status         TEXT NOT NULL,
    status_message TEXT,
    description    TEXT,
    source         TEXT,
    manifest       TEXT,
    metrics        TEXT NOT NULL,
    params         TEXT NOT NULL,
    tags           TEXT NOT NULL,
    lineage        TEXT NOT NULL,
    validation     TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX model_versions_by_status ON model_versions (name, status, version);

CREATE TABLE aliases (
    name       TEXT NOT NULL REFERENCES registered_models (name) ON DELETE CASCADE,
    alias      TEXT NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (name, alias),
    FOREIGN KEY (name, version) REFERENCES model_versions (name, version) ON DELETE CASCADE
);
CREATE INDEX aliases_by_version ON aliases (name, version);

CREATE TABLE audit_log (
    id     BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    model  TEXT NOT NULL,
    alias  TEXT,
    action TEXT NOT NULL,
    actor  TEXT NOT NULL,
    reason TEXT,
    report TEXT
);
CREATE INDEX audit_log_by_model ON audit_log (model, alias, id);

CREATE TABLE endpoints (
    lease_id      TEXT PRIMARY KEY,
    model         TEXT NOT NULL,
    version       BIGINT,
    address       TEXT NOT NULL,
    protocol      TEXT NOT NULL,
    capacity      DOUBLE PRECISION,
    labels        TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX endpoints_by_model ON endpoints (model, expires_at);
