public import PollwireCore

/// The `ballots.keys` column: the counters a ballot added to, one `question<TAB>key` a line.
///
/// Stored with the ballot so that a change subtracts exactly what the old ballot added, even
/// if the poll's definition was edited since. Ids never hold tabs or newlines.
public enum StoredKeys {
    public static func encode(_ keys: [TallyKey]) -> String {
        var text = ""
        for key in keys {
            if !text.isEmpty { text.append("\n") }
            text.append(key.question)
            text.append("\t")
            text.append(key.key)
        }
        return text
    }

    public static func decode(_ text: String) -> [TallyKey] {
        text.split(separator: "\n", omittingEmptySubsequences: true).map { line in
            let parts = line.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
            return TallyKey(question: String(parts[0]), key: parts.count > 1 ? String(parts[1]) : "")
        }
    }
}
