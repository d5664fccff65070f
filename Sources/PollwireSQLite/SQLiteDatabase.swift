import Foundation
public import GRDB
import PollwireCore
import PollwireEngine

/// The embedded store's database file: WAL, migrations, and the durability setting.
public struct SQLiteDatabase: Sendable {
    /// How hard a commit waits for the disk.
    public enum Synchronous: String, Sendable, CaseIterable {
        /// fsync on every commit: an acknowledged vote survives power loss (the default).
        case full = "FULL"
        /// In WAL mode, fsync only at checkpoints: an acknowledged vote survives a crash of the
        /// process, but the last commits before a power loss or kernel crash may be lost.
        case normal = "NORMAL"
    }

    public let pool: DatabasePool
    public let path: String

    /// Opens (creating if needed) the database at `path` and migrates it.
    public init(path: String, synchronous: Synchronous = .full) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.pool = try DatabasePool(path: path, configuration: configuration)
        // DatabasePool switches to WAL after `prepareDatabase` and sets synchronous=NORMAL on
        // the writer as it does, so the setting goes on the writer connection here, after it.
        // Only the writer commits, so only its setting decides durability.
        try self.pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue)")
        }
        self.path = path
        try Self.migrator.migrate(self.pool)
    }

    /// The schema, one migration per step; never edit a shipped step, add a new one.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE polls (
                        id TEXT PRIMARY KEY NOT NULL,
                        definition TEXT NOT NULL,
                        status TEXT NOT NULL,
                        opens_at REAL,
                        closes_at REAL,
                        version INTEGER NOT NULL DEFAULT 0,
                        created_at REAL NOT NULL
                    );
                    -- Append-only. A voter's first ballot has revision 0; a change appends
                    -- revision n+1. The unique index is the dedupe: one revision 0 per voter.
                    CREATE TABLE ballots (
                        seq INTEGER PRIMARY KEY,
                        poll_id TEXT NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
                        voter TEXT,
                        revision INTEGER NOT NULL DEFAULT 0,
                        idempotency_key TEXT,
                        answers TEXT NOT NULL,
                        keys TEXT NOT NULL,
                        version INTEGER NOT NULL,
                        created_at REAL NOT NULL
                    );
                    CREATE UNIQUE INDEX ballots_voter ON ballots(poll_id, voter, revision)
                        WHERE voter IS NOT NULL;
                    CREATE UNIQUE INDEX ballots_idempotency ON ballots(poll_id, idempotency_key)
                        WHERE idempotency_key IS NOT NULL;
                    CREATE INDEX ballots_poll ON ballots(poll_id, seq);
                    CREATE TABLE tallies (
                        poll_id TEXT NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
                        question TEXT NOT NULL,
                        key TEXT NOT NULL,
                        count INTEGER NOT NULL,
                        PRIMARY KEY (poll_id, question, key)
                    ) WITHOUT ROWID;
                    CREATE TABLE api_keys (
                        hash TEXT PRIMARY KEY NOT NULL,
                        name TEXT NOT NULL,
                        created_at REAL NOT NULL
                    ) WITHOUT ROWID;
                    CREATE TABLE secrets (
                        name TEXT PRIMARY KEY NOT NULL,
                        value BLOB NOT NULL
                    ) WITHOUT ROWID;
                    """)
        }
        // Owners and scoped keys, and the append-only audit log. What existed belongs to the
        // default owner; keys made before keep every scope they had in effect.
        migrator.registerMigration("v2-owners") { db in
            try db.execute(
                sql: """
                    CREATE TABLE owners (
                        id TEXT PRIMARY KEY NOT NULL,
                        name TEXT NOT NULL,
                        created_at REAL NOT NULL
                    ) WITHOUT ROWID;
                    INSERT INTO owners (id, name, created_at) VALUES ('default', 'default', CAST(strftime('%s', 'now') AS REAL));
                    ALTER TABLE polls ADD COLUMN owner_id TEXT NOT NULL DEFAULT 'default';
                    CREATE INDEX polls_owner ON polls(owner_id);
                    ALTER TABLE api_keys ADD COLUMN id TEXT;
                    ALTER TABLE api_keys ADD COLUMN owner_id TEXT NOT NULL DEFAULT 'default';
                    ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,write,export,admin,operator';
                    ALTER TABLE api_keys ADD COLUMN expires_at REAL;
                    ALTER TABLE api_keys ADD COLUMN last_used_at REAL;
                    ALTER TABLE api_keys ADD COLUMN revoked_at REAL;
                    UPDATE api_keys SET id = 'key_' || substr(hash, 1, 16);
                    CREATE UNIQUE INDEX api_keys_id ON api_keys(id);
                    CREATE INDEX api_keys_owner ON api_keys(owner_id);
                    CREATE TABLE audit_log (
                        seq INTEGER PRIMARY KEY,
                        at REAL NOT NULL,
                        key_id TEXT NOT NULL,
                        owner_id TEXT NOT NULL,
                        request_id TEXT,
                        action TEXT NOT NULL,
                        poll_id TEXT,
                        detail TEXT NOT NULL
                    );
                    CREATE INDEX audit_log_owner ON audit_log(owner_id, seq);
                    CREATE INDEX audit_log_poll ON audit_log(poll_id, seq);
                    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
                        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
                        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                    CREATE TABLE voter_keys (
                        id TEXT PRIMARY KEY NOT NULL,
                        owner_id TEXT NOT NULL,
                        algorithm TEXT NOT NULL,
                        material TEXT NOT NULL,
                        created_at REAL NOT NULL
                    ) WITHOUT ROWID;
                    CREATE INDEX voter_keys_owner ON voter_keys(owner_id);
                    """)
        }
        // The tamper-evident ballot log (`BallotChain`): each ballot's chain hash and position,
        // each poll's head. Ballots stored before are chained now, in the order they were stored.
        migrator.registerMigration("v3-chain") { db in
            try db.execute(
                sql: """
                    ALTER TABLE ballots ADD COLUMN chain BLOB;
                    ALTER TABLE ballots ADD COLUMN chain_position INTEGER;
                    ALTER TABLE polls ADD COLUMN chain_head BLOB;
                    ALTER TABLE polls ADD COLUMN chain_length INTEGER NOT NULL DEFAULT 0;
                    """)
            var links: [String: ChainLink] = [:]
            var updates: [(seq: Int64, receipt: ChainLink)] = []
            let rows = try Row.fetchCursor(
                db, sql: "SELECT seq, poll_id, voter, revision, created_at, answers, keys FROM ballots ORDER BY seq")
            while let row = try rows.next() {
                let poll: String = row[1]
                let digest = BallotChain.digest(
                    poll: poll, voter: row[2], revision: row[3], storedAtMicros: SQLiteVoteStore.micros(row[4]),
                    answers: row[5], keys: row[6])
                let link = (links[poll] ?? .empty).appending(digest)
                links[poll] = link
                updates.append((row[0], link))
            }
            let update = try db.makeStatement(sql: "UPDATE ballots SET chain = ?, chain_position = ? WHERE seq = ?")
            for (seq, link) in updates {
                try update.execute(arguments: [Data(link.head.bytes), link.length, seq])
            }
            let head = try db.makeStatement(sql: "UPDATE polls SET chain_head = ?, chain_length = ? WHERE id = ?")
            for (poll, link) in links { try head.execute(arguments: [Data(link.head.bytes), link.length, poll]) }
        }
        // Ballots cast per second by counter (`WindowCount`), kept as ballots commit; ballots
        // stored before are counted now, by the second they were stored in.
        migrator.registerMigration("v4-windows") { db in
            try db.execute(
                sql: """
                    CREATE TABLE ballot_windows (
                        poll_id TEXT NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
                        second INTEGER NOT NULL,
                        question TEXT NOT NULL,
                        key TEXT NOT NULL,
                        count INTEGER NOT NULL,
                        PRIMARY KEY (poll_id, second, question, key)
                    ) WITHOUT ROWID
                    """)
            var counts: [String: CastWindows.Recount] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT poll_id, created_at, keys FROM ballots ORDER BY seq")
            while let row = try rows.next() {
                counts[row[0], default: .init()].add(micros: SQLiteVoteStore.micros(row[1]), keys: row[2])
            }
            let insert = try db.makeStatement(
                sql: "INSERT INTO ballot_windows (poll_id, second, question, key, count) VALUES (?, ?, ?, ?, ?)")
            for (poll, recount) in counts {
                for row in recount.rows() {
                    try insert.execute(arguments: [poll, row.second, row.key.question, row.key.key, row.count])
                }
            }
        }
        // A ballot's own event time, when a batch sent one (`VoteCommand.CastAt`), and whether
        // it came too late for its window. Ballots stored before have neither.
        migrator.registerMigration("v5-cast-at") { db in
            try db.execute(
                sql: """
                    ALTER TABLE ballots ADD COLUMN cast_at REAL;
                    ALTER TABLE ballots ADD COLUMN late INTEGER NOT NULL DEFAULT 0;
                    """)
        }
        return migrator
    }

    /// Whether every migration has been applied.
    public func isMigrated() throws -> Bool {
        try self.pool.read { try Self.migrator.hasCompletedMigrations($0) }
    }
}
