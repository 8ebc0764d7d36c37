/// The version reported in `User-Agent` and `bulkwatch --version`.
public enum BulkWatchVersion {
    public static let current = "0.1.0"
}
