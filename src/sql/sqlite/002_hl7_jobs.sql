-- HL7 v2 messages from the RIS, journaled as received, with what drimbox
-- answered and why; the job they created, if any.
CREATE TABLE hl7_messages (
    id          INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,              -- unix seconds
    peer        TEXT,                          -- address:port
    sender      TEXT,                          -- MSH-3^MSH-4
    digest      TEXT,                          -- SHA-256 of raw, hex
    control_id  TEXT,                          -- MSH-10
    type        TEXT,                          -- MSH-9, e.g. MDM^T02^MDM_T02
    raw         BLOB NOT NULL,                 -- as received (an oversized
                                               -- message: its first 64 KiB)
    size        INTEGER NOT NULL,              -- bytes received
    outcome     TEXT NOT NULL CHECK (outcome IN ('AA', 'AE', 'AR')),
    reason      TEXT,
    job         INTEGER REFERENCES jobs(id)
);
CREATE INDEX hl7_messages_at ON hl7_messages(received_at);
-- a message sent again (same sender, MSH-10 and bytes) is recognised
CREATE INDEX hl7_messages_sent ON hl7_messages(sender, control_id);

-- What a job is about (e.g. the patient's local id, to release the jobs
-- parked for an unqualified identity), and why it is parked.
ALTER TABLE jobs ADD COLUMN subject TEXT;
ALTER TABLE jobs ADD COLUMN parked_for TEXT;
CREATE INDEX jobs_parked ON jobs(subject) WHERE state = 'parked';
