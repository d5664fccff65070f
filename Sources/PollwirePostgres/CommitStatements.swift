import Foundation
import PostgresNIO

/// The statements of a group commit (`PostgresVoteStore`), prepared once per connection: parsed
/// and planned once instead of at every commit (planning the write statement cost PostgreSQL
/// about as much as running it).
enum CommitStatements {
    /// The batch's polls, shared-locked, with one shard's sequence for each.
    struct ReadPolls: PostgresPreparedStatement {
        static let name = "pollwire_read_polls_2"
        static let sql = """
            SELECT p.id, COALESCE(s.sequence, 0), p.status, p.opens_at, p.closes_at, COALESCE(s.chain_length, 0),
                COALESCE(encode(s.chain_head, 'hex'), '') FROM polls p
            LEFT JOIN poll_shards s ON s.poll_id = p.id AND s.node = $2
            WHERE p.id = ANY($1::text[]) ORDER BY p.id FOR SHARE OF p
            """
        typealias Row = (String, Int64, String, Double?, Double?, Int64, String)
        var ids: [String]
        var node: Int32

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 2)
            bindings.append(self.ids)
            bindings.append(self.node)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    /// The idempotency keys of the batch that are stored already.
    struct ReadKeys: PairLookup {
        static let name = "pollwire_read_keys_2"
        static let sql = """
            SELECT i.poll_id, i.key, i.answers, i.version, COALESCE(encode(i.chain, 'hex'), ''),
                COALESCE(i.chain_position, 0), COALESCE(i.chain_shard, 0) FROM idempotency_keys i
            JOIN UNNEST($1::text[], $2::text[]) AS u(poll_id, key) ON i.poll_id = u.poll_id AND i.key = u.key
            """
        typealias Row = (String, String, String, Int64, String, Int64, Int32)
        var pairs: [PostgresVoteStore.Pair]

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    /// The voters of the batch that are stored already, locked in key order.
    struct ReadVoters: PairLookup {
        static let name = "pollwire_read_voters"
        static let sql = """
            SELECT v.poll_id, v.voter, v.revision, v.answers, v.keys, v.version FROM voters v
            JOIN UNNEST($1::text[], $2::text[]) AS u(poll_id, voter) ON v.poll_id = u.poll_id AND v.voter = u.voter
            ORDER BY v.poll_id, v.voter FOR UPDATE OF v
            """
        typealias Row = (String, String, Int32, String, String, Int64)
        var pairs: [PostgresVoteStore.Pair]

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    /// Every write of a batch in one statement of data-modifying CTEs fed by arrays; returns the
    /// row counts the store checks: voters inserted, voters updated, keys inserted, sequences
    /// moved, notifications sent. Nullable columns travel as '' (PostgresNIO arrays have no NULL
    /// elements) and become NULL again with NULLIF.
    struct Write: PostgresPreparedStatement {
        static let name = "pollwire_write_4"
        static let sql = """
            WITH new_voters AS (
                INSERT INTO voters (poll_id, voter, revision, answers, keys, version)
                SELECT p, v, r::integer, a, k, ver FROM UNNEST(
                    $1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::int8[]) AS u(p, v, r, a, k, ver)
                ON CONFLICT DO NOTHING RETURNING 1
            ), changed_voters AS (
                UPDATE voters SET revision = u.r::integer, answers = u.a, keys = u.k, version = u.ver
                FROM UNNEST(
                    $7::text[], $8::text[], $9::int8[], $10::int8[], $11::text[], $12::text[], $13::int8[])
                    AS u(p, v, r, was, a, k, ver)
                WHERE voters.poll_id = u.p AND voters.voter = u.v AND voters.revision = u.was::integer
                RETURNING 1
            ), new_keys AS (
                INSERT INTO idempotency_keys (poll_id, key, answers, version, chain, chain_position, chain_shard)
                SELECT p, k, a, ver, decode(NULLIF(h, ''), 'hex'), NULLIF(pos, 0),
                    CASE WHEN h = '' THEN NULL ELSE $30::integer END
                FROM UNNEST($14::text[], $15::text[], $16::text[], $17::int8[], $39::text[], $40::int8[])
                    AS u(p, k, a, ver, h, pos)
                ON CONFLICT DO NOTHING RETURNING 1
            ), new_ballots AS (
                INSERT INTO ballots (
                    poll_id, voter, revision, idempotency_key, answers, keys, version, created_at, chain,
                    chain_position, chain_shard, cast_at, late)
                SELECT p, NULLIF(v, ''), r::integer, NULLIF(i, ''), a, k, ver,
                    timestamptz 'epoch' + $25::int8 * interval '1 microsecond', decode(NULLIF(h, ''), 'hex'),
                    NULLIF(pos, 0), CASE WHEN h = '' THEN NULL ELSE $30::integer END,
                    NULLIF(c, -9223372036854775808), l
                FROM UNNEST(
                    $18::text[], $19::text[], $20::int8[], $21::text[], $22::text[], $23::text[], $24::int8[],
                    $35::text[], $36::int8[], $45::int8[], $46::bool[])
                    AS u(p, v, r, i, a, k, ver, h, pos, c, l)
            ), counted AS (
                INSERT INTO tally_shards (poll_id, node, question, key, count)
                SELECT p, $30::integer, q, k, n FROM UNNEST($26::text[], $27::text[], $28::text[], $29::int8[])
                    AS u(p, q, k, n)
                ON CONFLICT (poll_id, node, question, key) DO UPDATE SET count = tally_shards.count + excluded.count
            ), windowed AS (
                INSERT INTO ballot_windows (poll_id, node, second, question, key, count)
                SELECT p, $30::integer, s, q, k, n
                FROM UNNEST($41::text[], $42::text[], $43::text[], $44::int8[], $47::int8[]) AS u(p, q, k, n, s)
                ON CONFLICT (poll_id, node, second, question, key)
                    DO UPDATE SET count = ballot_windows.count + excluded.count
            ), sequences AS (
                INSERT INTO poll_shards (poll_id, node, sequence, chain_head, chain_length)
                SELECT p, $30::integer, s, decode(NULLIF(h, ''), 'hex'), l
                FROM UNNEST($31::text[], $32::int8[], $37::text[], $38::int8[]) AS u(p, s, h, l)
                ON CONFLICT (poll_id, node) DO UPDATE SET sequence = excluded.sequence,
                    chain_head = excluded.chain_head, chain_length = excluded.chain_length
                WHERE poll_shards.sequence = excluded.sequence - 1
                RETURNING 1
            ), notified AS (
                SELECT pg_notify($33::text, n) FROM UNNEST($34::text[]) AS n
            )
            SELECT (SELECT count(*) FROM new_voters), (SELECT count(*) FROM changed_voters),
                (SELECT count(*) FROM new_keys), (SELECT count(*) FROM sequences), (SELECT count(*) FROM notified)
            """
        typealias Row = (Int64, Int64, Int64, Int64, Int64)
        var insert: PostgresVoteStore.VoterColumns
        var update: PostgresVoteStore.VoterColumns
        var writes: PostgresVoteStore.Writes
        /// Microseconds since 1970: the ballots' time, as their chain digests cover it.
        var micros: Int64
        var tally: (poll: [String], question: [String], key: [String], amount: [Int64])
        /// What the batch adds to the window counts (`BatchedPoll.windowCounts`).
        var cast: WindowColumns
        var node: Int32
        var changed: (polls: [String], sequences: [Int64], heads: [String], lengths: [Int64])
        var notices: [String]

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 47)
            for voters in [self.insert, self.update] {
                bindings.append(voters.poll)
                bindings.append(voters.voter)
                bindings.append(voters.revision)
                if voters.isUpdate { bindings.append(voters.storedRevision) }
                bindings.append(voters.answers)
                bindings.append(voters.keys)
                bindings.append(voters.version)
            }
            bindings.append(self.writes.keyPoll)
            bindings.append(self.writes.keyID)
            bindings.append(self.writes.keyAnswers)
            bindings.append(self.writes.keyVersion)
            bindings.append(self.writes.ballotPoll)
            bindings.append(self.writes.ballotVoter)
            bindings.append(self.writes.ballotRevision)
            bindings.append(self.writes.ballotKey)
            bindings.append(self.writes.ballotAnswers)
            bindings.append(self.writes.ballotKeys)
            bindings.append(self.writes.ballotVersion)
            bindings.append(self.micros)
            bindings.append(self.tally.poll)
            bindings.append(self.tally.question)
            bindings.append(self.tally.key)
            bindings.append(self.tally.amount)
            bindings.append(self.node)
            bindings.append(self.changed.polls)
            bindings.append(self.changed.sequences)
            bindings.append(ChangeNotice.channel)
            bindings.append(self.notices)
            bindings.append(self.writes.ballotChain)
            bindings.append(self.writes.ballotPosition)
            bindings.append(self.changed.heads)
            bindings.append(self.changed.lengths)
            bindings.append(self.writes.keyChain)
            bindings.append(self.writes.keyPosition)
            bindings.append(self.cast.poll)
            bindings.append(self.cast.question)
            bindings.append(self.cast.key)
            bindings.append(self.cast.amount)
            bindings.append(self.writes.ballotCastAt)
            bindings.append(self.writes.ballotLate)
            bindings.append(self.cast.second)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }
}

extension CommitStatements {
    /// Window count rows (`WindowCount`) of a commit, as columns.
    struct WindowColumns {
        var poll: [String] = []
        var second: [Int64] = []
        var question: [String] = []
        var key: [String] = []
        var amount: [Int64] = []
    }
}

/// A lookup by (poll, id) pairs, bound as two arrays ($1 polls, $2 ids).
protocol PairLookup: PostgresPreparedStatement {
    var pairs: [PostgresVoteStore.Pair] { get }
}

extension PairLookup {
    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 2)
        bindings.append(self.pairs.map(\.poll))
        bindings.append(self.pairs.map(\.id))
        return bindings
    }
}
