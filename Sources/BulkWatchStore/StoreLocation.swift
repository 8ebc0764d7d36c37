import BulkWatchSupport
import Foundation
package import Logging
import PostgresNIO

#if canImport(Glibc)
    import Glibc
#endif

/// A `--state` value that cannot be used: one line, never containing a password.
package struct StoreLocationError: Error, Sendable, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// Where the state lives, parsed from `--state` (DESIGN.md §6, §8): a value starting with
/// `postgres://` or `postgresql://` is a PostgreSQL database, anything else the path of an SQLite file.
package enum StoreLocation: Sendable, Equatable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(PostgresSettings)

    /// Parses `value`; for PostgreSQL, reads the password as ``PostgresSettings/init(url:environment:passwordFile:)``
    /// says (`environment` and `passwordFile` are only used then).
    package init(
        _ value: String, environment: [String: String] = ProcessInfo.processInfo.environment,
        passwordFile: String? = nil
    ) throws {
        if PostgresSettings.isURL(value) {
            self = .postgres(try PostgresSettings(url: value, environment: environment, passwordFile: passwordFile))
        } else {
            self = .sqlite(path: value)
        }
    }

    /// The path, or the URL without any password: safe for logs.
    package var description: String {
        switch self {
        case .sqlite(let path): path
        case .postgres(let settings): settings.description
        }
    }

    /// Whether `value` names a PostgreSQL database rather than an SQLite file.
    package static func isPostgres(_ value: String) -> Bool { PostgresSettings.isURL(value) }

    /// Opens the store, runs `body` with it, and closes it.
    ///
    /// SQLite: with `exclusive`, ``StateLock`` is taken first and held until `body` returns (a watcher;
    /// the operator commands work beside it without). PostgreSQL: the connection pool runs in a child
    /// task for the duration of `body` and the schema is migrated before it; no state lock (replicas
    /// share the database, and leases fence their writes). Scoped rather than returned because the pool
    /// needs a running task, and structured concurrency gives it one that ends with `body`.
    ///
    /// `acceptsExclusive` false (replicated mode): PostgreSQL refuses writes that carry no lease's fence.
    package func withStore<T: Sendable>(
        logger: Logger, exclusive: Bool = false, acceptsExclusive: Bool = true, _ body: (any Store) async throws -> T
    ) async throws -> T {
        switch self {
        case .sqlite(let path):
            let lock = exclusive ? try StateLock(statePath: path) : nil
            defer { withExtendedLifetime(lock) {} }
            return try await body(try SQLiteStore(path: path))
        case .postgres(let settings):
            let store = PostgresStore(settings: settings, acceptsExclusive: acceptsExclusive, logger: logger)
            return try await store.whileRunning {
                try await store.migrate()
                return try await body(store)
            }
        }
    }
}

extension StoreLocation {
    /// For a watcher (`run`, `demo`): an SQLite state gives `body` nil (the runtime opens the file under
    /// its ``StateLock`` itself); a PostgreSQL one gives it the store, running and migrated for the
    /// duration of `body`. A `--state` that cannot be parsed throws ``StoreLocationError``.
    package static func withWatcherStore<T: Sendable>(
        _ value: String, logger: Logger, acceptsExclusive: Bool = true, _ body: ((any Store)?) async throws -> T
    ) async throws -> T {
        let location = try StoreLocation(value)
        guard case .postgres = location else { return try await body(nil) }
        return try await location.withStore(logger: logger, acceptsExclusive: acceptsExclusive) { try await body($0) }
    }
}

extension PostgresStore {
    /// Runs the pool in a child task while `body` runs, then stops it (cancelling ends `run()`).
    package func whileRunning<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.run() }
            defer { group.cancelAll() }
            return try await body()
        }
    }
}

/// How to reach a PostgreSQL state: parsed from a `postgres://user@host:port/database?sslmode=…` URL.
///
/// The password never comes from the URL (it would show in `ps`, shell history and log lines): a URL
/// with one is refused. It comes, first found, from `passwordFile` (a 0600 file holding only the
/// password, e.g. a systemd credential), `BULKWATCH_STATE_PASSWORD_FILE` (the same),
/// `PGPASSWORD`, or `PGPASSFILE` (libpq's `host:port:database:user:password` lines, also 0600).
/// It is kept out of ``description`` and every error.
package struct PostgresSettings: Sendable, Equatable, CustomStringConvertible, CustomReflectable {
    /// libpq's `sslmode` values that bulkwatch supports.
    package enum SSLMode: String, Sendable, CaseIterable {
        /// Plain TCP.
        case disable
        /// TLS when the server offers it, without verifying its certificate (libpq's default).
        case prefer
        /// TLS or no connection, without verifying the certificate (encryption only).
        case require
        /// TLS with the certificate verified against the system's trust roots and the host name.
        case verifyFull = "verify-full"
    }

    /// The TCP host, nil when connecting through a unix socket.
    package var host: String?
    /// The unix socket's directory (`?host=/path`), as libpq names it; nil for TCP.
    package var socketDirectory: String?
    package var port: Int
    package var user: String
    package var database: String
    package var sslMode: SSLMode
    /// Never printed; `Equatable` compares it like the rest.
    package var password: String?

    package var hasPassword: Bool { password != nil }

    static func isURL(_ value: String) -> Bool {
        value.hasPrefix("postgres://") || value.hasPrefix("postgresql://")
    }

    package init(
        url: String, environment: [String: String] = ProcessInfo.processInfo.environment, passwordFile: String? = nil
    ) throws {
        guard Self.isURL(url), let components = URLComponents(string: url) else {
            throw StoreLocationError("--state: not a postgres:// URL (postgres://user@host:5432/database)")
        }
        guard components.password == nil else {
            throw StoreLocationError(
                "--state: the URL must not contain a password (it would show in ps and logs); "
                    + "set PGPASSWORD, PGPASSFILE or BULKWATCH_STATE_PASSWORD_FILE (a 0600 file) instead")
        }
        var query: [String: String] = [:]
        for item in components.queryItems ?? [] {
            guard let value = item.value else { throw StoreLocationError("--state: \(item.name) needs a value") }
            query[item.name] = value
        }
        sslMode = .prefer
        if let mode = query.removeValue(forKey: "sslmode") {
            guard let parsed = SSLMode(rawValue: mode) else {
                throw StoreLocationError(
                    "--state: sslmode must be one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", ")), "
                        + "not \(mode)")
            }
            sslMode = parsed
        }
        socketDirectory = query.removeValue(forKey: "host")
        if let directory = socketDirectory, !directory.hasPrefix("/") {
            throw StoreLocationError("--state: host= in the query must be a unix socket directory (starting with /)")
        }
        user = query.removeValue(forKey: "user") ?? components.percentEncodedUser?.removingPercentEncoding ?? ""
        guard !user.isEmpty else {
            throw StoreLocationError("--state: the URL names no user (postgres://USER@host/db)")
        }
        if let unknown = query.keys.sorted().first {
            throw StoreLocationError("--state: unsupported URL parameter \(unknown) (supported: sslmode, host, user)")
        }
        let host = components.host.flatMap { $0.isEmpty ? nil : $0 }
        self.host = socketDirectory == nil ? (host ?? "localhost") : nil
        port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw StoreLocationError("--state: port \(port) is out of range") }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        database = path.removingPercentEncoding ?? path
        if database.isEmpty { database = user }
        guard !database.contains("/") else { throw StoreLocationError("--state: \(database) is not a database name") }
        if socketDirectory != nil && sslMode == .verifyFull {
            throw StoreLocationError("--state: sslmode=verify-full needs a TCP host, not a unix socket")
        }
        password = try Self.password(
            environment: environment, passwordFile: passwordFile, host: self.host ?? "localhost", port: port,
            database: database, user: user)
    }

    /// The URL again, without any password.
    package var description: String {
        var components = URLComponents()
        components.scheme = "postgres"
        components.user = user
        components.host = host ?? ""
        if host != nil { components.port = port }
        components.path = "/" + database
        var items = [URLQueryItem(name: "sslmode", value: sslMode.rawValue)]
        if let socketDirectory { items.append(URLQueryItem(name: "host", value: socketDirectory)) }
        components.queryItems = items
        return components.string ?? "postgres://\(user)@\(host ?? "")/\(database)"
    }

    /// What `dump` and test failure messages show: everything but the password.
    package var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "host": host as Any, "socketDirectory": socketDirectory as Any, "port": port, "user": user,
                "database": database, "sslMode": sslMode, "hasPassword": hasPassword,
            ])
    }

    /// PostgresNIO's configuration for these settings.
    var clientConfiguration: PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let socketDirectory {
            configuration = PostgresClient.Configuration(
                unixSocketPath: socketDirectory + "/.s.PGSQL.\(port)", username: user, password: password,
                database: database)
        } else {
            var tls = TLSConfiguration.makeClientConfiguration()
            if sslMode != .verifyFull { tls.certificateVerification = .none }
            let mode: PostgresClient.Configuration.TLS =
                switch sslMode {
                case .disable: .disable
                case .prefer: .prefer(tls)
                case .require, .verifyFull: .require(tls)
                }
            configuration = PostgresClient.Configuration(
                host: host ?? "localhost", port: port, username: user, password: password, database: database,
                tls: mode)
        }
        configuration.options.maximumConnections = 8
        configuration.options.additionalStartupParameters = [("application_name", "bulkwatch")]
        return configuration
    }

    /// The same settings for one connection outside the pool (``PostgresStore/migrate()``'s probe).
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        if let socketDirectory {
            return PostgresConnection.Configuration(
                unixSocketPath: socketDirectory + "/.s.PGSQL.\(port)", username: user, password: password,
                database: database)
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if sslMode != .verifyFull { tls.certificateVerification = .none }
        let mode: PostgresConnection.Configuration.TLS =
            switch sslMode {
            case .disable: .disable
            case .prefer: .prefer(try NIOSSLContext(configuration: tls))
            case .require, .verifyFull: .require(try NIOSSLContext(configuration: tls))
            }
        return PostgresConnection.Configuration(
            host: host ?? "localhost", port: port, username: user, password: password, database: database, tls: mode)
    }

    // MARK: Password

    private static func password(
        environment: [String: String], passwordFile: String?, host: String, port: Int, database: String, user: String
    ) throws -> String? {
        if let file = passwordFile ?? environment["BULKWATCH_STATE_PASSWORD_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            return try readPrivateFile(file)
        }
        if let password = environment["PGPASSWORD"], !password.isEmpty { return password }
        if let file = environment["PGPASSFILE"], !file.isEmpty {
            return pgpassEntry(
                try readPrivateFile(file), host: host, port: port, database: database, user: user)
        }
        return nil
    }

    /// The password of the first line of a libpq password file matching the connection (`*` matches
    /// anything; `\:` and `\\` escape).
    package static func pgpassEntry(_ content: String, host: String, port: Int, database: String, user: String)
        -> String?
    {
        for line in content.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
            var fields: [String] = [""]
            var escaped = false
            for character in line {
                if escaped {
                    fields[fields.count - 1].append(character)
                    escaped = false
                } else if character == "\\" {
                    escaped = true
                } else if character == ":" && fields.count < 5 {
                    fields.append("")
                } else {
                    fields[fields.count - 1].append(character)
                }
            }
            guard fields.count == 5 else { continue }
            let wanted = [host, String(port), database, user]
            if zip(fields, wanted).allSatisfy({ $0 == "*" || $0 == $1 }) { return fields[4] }
        }
        return nil
    }

    /// The trimmed content of a file only its owner can read: the one reader every secret file goes
    /// through (checked on the open descriptor, no symlinks), its error kept to one line.
    static func readPrivateFile(_ path: String) throws -> String {
        do {
            return try SecretReference.readPrivateFile(path, what: "PostgreSQL password file")
        } catch {
            throw StoreLocationError(error.message)
        }
    }
}
