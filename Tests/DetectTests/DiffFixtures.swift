import BulkWatch

/// Builds a listing the way the watcher gets it: a body decoded by ``BulkListDecoder`` (each item recorded as
/// offsets into the body, ``BulkListing/withKeys(_:)``), or with `built`, from ``BulkItem`` values (each kept
/// whole, their `rawJSON` slices of one body buffer). The differ must give the same outcome for both.
///
/// Items are written as `"id:STATUS@updatedOn"`; `STATUS` may be empty (nil) and `@updatedOn` may be
/// left out (nil), so a table row stays one readable line.
func listing(_ specs: [String], skippedWithoutId: Int = 0, built: Bool = false) -> BulkListing {
    var body: [UInt8] = Array("{\"content\":[".utf8)
    var ranges: [Range<Int>] = []
    var fields: [(String, String?, String?)] = []
    for (n, spec) in specs.enumerated() {
        let (bulkId, status, updatedOn) = parse(spec)
        if n > 0 { body.append(UInt8(ascii: ",")) }
        var object = "{\"bulkId\":\"\(bulkId)\""
        if let status { object += ",\"status\":\"\(status)\"" }
        if let updatedOn { object += ",\"updatedOn\":\"\(updatedOn)\"" }
        object += "}"
        let start = body.count
        body.append(contentsOf: object.utf8)
        ranges.append(start..<body.count)
        fields.append((bulkId, status, updatedOn))
    }
    body.append(contentsOf: "]}".utf8)
    guard built else {
        // The fixtures' ids and statuses need no escapes, so every item takes the offsets form.
        var decoded = try! BulkListDecoder.decode(body)
        decoded.skippedWithoutId = skippedWithoutId
        return decoded
    }
    let items = zip(fields, ranges).map { field, range in
        BulkItem(bulkId: field.0, status: field.1, updatedOn: field.2, rawJSON: body[range])
    }
    return BulkListing(items: items, skippedWithoutId: skippedWithoutId)
}

func item(_ spec: String) -> BulkItem { listing([spec]).items[0] }

private func parse(_ spec: String) -> (String, String?, String?) {
    let colon = spec.firstIndex(of: ":") ?? spec.endIndex
    let bulkId = String(spec[..<colon])
    guard colon < spec.endIndex else { return (bulkId, nil, nil) }
    let rest = spec[spec.index(after: colon)...]
    let at = rest.firstIndex(of: "@") ?? rest.endIndex
    let status = rest[..<at].isEmpty ? nil : String(rest[..<at])
    let updatedOn = at < rest.endIndex ? String(rest[rest.index(after: at)...]) : nil
    return (bulkId, status, updatedOn)
}

/// One line per event: `created a QUEUED t1`, `changed a DONE t2 (was QUEUED t1)`, `expired a …`.
func render(_ change: DetectedChange) -> String {
    var line =
        "\(change.kind.rawValue) \(change.item.bulkId) \(change.item.status ?? "-") \(change.item.updatedOn ?? "-")"
    if let previous = change.previous {
        line += " (was \(previous.status ?? "-") \(previous.updatedOn ?? "-"))"
    }
    return line
}

/// `count` item specs `p00:QUEUED@t`, `p01:QUEUED@t`, … for guard scenarios.
func population(_ count: Int, prefix: String = "p", status: String = "QUEUED", updatedOn: String = "1") -> [String] {
    (0..<count).map { n in "\(prefix)\(n < 10 ? "0" : "")\(n):\(status)@\(updatedOn)" }
}

/// A watcher's view of the differ: one snapshot, successive successful polls.
struct DiffHarness {
    var snapshot = Snapshot()
    var policy: DetectionPolicy
    private(set) var polls = 0
    /// ``SnapshotDiffer``'s `parallelFrom`: 1 splits every listing's lookups over two threads.
    var parallelFrom = SnapshotDiffer.parallelListingItems
    /// ``SnapshotDiffer``'s `readAheadLimit`: 0 builds every item in pass 2, none ahead.
    var readAheadLimit = SnapshotDiffer.readAheadItems

    init(expireAfter: Int = 2, initial: DetectionPolicy.InitialMode = .emit) {
        policy = DetectionPolicy(expireAfter: expireAfter, initial: initial)
    }

    @discardableResult
    mutating func poll(_ specs: [String], skippedWithoutId: Int = 0) -> DiffOutcome {
        poll(listing(specs, skippedWithoutId: skippedWithoutId))
    }

    @discardableResult
    mutating func poll(_ listing: BulkListing) -> DiffOutcome {
        let outcome = SnapshotDiffer.apply(
            listing, to: &snapshot, policy: policy, isFirstRun: polls == 0, parallelFrom: parallelFrom,
            readAheadLimit: readAheadLimit)
        polls += 1
        return outcome
    }

    /// Events of one poll, rendered.
    mutating func events(_ specs: [String]) -> [String] {
        poll(specs).changes.map(render)
    }
}
