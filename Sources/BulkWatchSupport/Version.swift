/// The version reported in `User-Agent` and `bulkwatch --version`.
package enum BulkWatchVersion {
    package static let current = "0.1.0"
}
