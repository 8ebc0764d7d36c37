package import BulkWatchSupport
import Foundation

/// Applying raw values to a settings value by key: one implementation for every layer and struct.
package enum SettingLayer {
    package typealias Setter<Settings> =
        @Sendable (inout Settings, SettingValue, _ directory: String?) throws(SettingError) -> Void

    /// `BULKWATCH_<KEY>` for each of `keys`; a bad value names its variable.
    static func fromEnvironment<Settings>(
        _ environment: [String: String], keys: [String], setters: [String: Setter<Settings>], into settings: Settings
    ) throws(SettingError) -> Settings {
        var settings = settings
        for key in keys {
            let variable = "BULKWATCH_" + key.uppercased().replacingOccurrences(of: "-", with: "_")
            guard let value = environment[variable], !value.isEmpty, let setter = setters[key] else { continue }
            do {
                try setter(&settings, .scalar(value), nil)
            } catch {
                throw SettingError("\(variable): \(error.message)")
            }
        }
        return settings
    }

    /// Flag values by key; a bad one is reported by `describe(key, error)` (the caller names its flag).
    package static func apply<Settings>(
        _ pairs: [(String, SettingValue)], setters: [String: Setter<Settings>], into settings: Settings,
        describe: (String, SettingError) -> any Error
    ) throws -> Settings {
        var settings = settings
        for (key, value) in pairs {
            guard let setter = setters[key] else { continue }
            do {
                try setter(&settings, value, nil)
            } catch {
                throw describe(key, error)
            }
        }
        return settings
    }
}
