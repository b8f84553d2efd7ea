-- The store's tables on PostgreSQL (store/postgres.rs): the same kinds of
-- record as sled's trees. Serialised values are JSON in bytea, exactly as
-- sled keeps them; what a query filters or orders by has its own column.
-- Keys are compared bytewise (COLLATE "C"), as sled orders them.

CREATE SEQUENCE ids;

CREATE TABLE sessions (
    key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE consent (
    user_key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE appointments (
    id bigint PRIMARY KEY,
    user_key text COLLATE "C" NOT NULL,
    value bytea NOT NULL
);
CREATE INDEX appointments_user ON appointments (user_key);

-- Clients booked per slot (`service|office|date|time`).
CREATE TABLE slots (
    key text COLLATE "C" PRIMARY KEY,
    booked integer NOT NULL CHECK (booked >= 0)
);

CREATE TABLE callbacks (
    id bigint PRIMARY KEY,
    user_key text COLLATE "C" NOT NULL,
    value bytea NOT NULL
);

CREATE TABLE feedback (
    id bigserial PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE queue (
    session text COLLATE "C" PRIMARY KEY,
    since bigint NOT NULL,
    value bytea NOT NULL
);

CREATE TABLE status (
    number text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

-- The anonymised analytics log, in the order it was written.
CREATE TABLE log (
    id bigserial PRIMARY KEY,
    client text COLLATE "C" NOT NULL,
    ts bigint NOT NULL,
    value bytea NOT NULL
);
CREATE INDEX log_client ON log (client);

CREATE TABLE meta (
    key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

-- The web outbox: each session's messages numbered from 1, the last number
-- kept apart so that numbers go on after a sweep.
CREATE TABLE outbox_seq (
    session text COLLATE "C" PRIMARY KEY,
    seq bigint NOT NULL
);
CREATE TABLE outbox (
    session text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    at bigint NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (session, seq)
);
CREATE INDEX outbox_at ON outbox (at);

-- Processed-input markers.
CREATE TABLE seen (
    marker text COLLATE "C" PRIMARY KEY,
    at bigint NOT NULL
);
CREATE INDEX seen_at ON seen (at);

-- Replies not yet confirmed as delivered.
CREATE TABLE undelivered (
    marker text COLLATE "C" PRIMARY KEY,
    at bigint NOT NULL,
    value bytea NOT NULL
);

CREATE TABLE signins (
    key text COLLATE "C" PRIMARY KEY,
    login text NOT NULL,
    expires bigint NOT NULL
);

-- Records of the routine operations.
CREATE TABLE records (
    kind text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (kind, key)
);
