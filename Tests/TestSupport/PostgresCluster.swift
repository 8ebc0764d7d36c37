import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A throwaway PostgreSQL server for the tests: one per test process, started on first use, each
/// test in its own fresh database.
///
/// `initdb` makes a cluster in a temporary folder, `pg_ctl` starts it on a free loopback port with
/// its socket in that folder (`fsync=off`: nothing here must survive a power cut). PostgreSQL refuses
/// to run as root, so as root the folder is given to the `postgres` user and the tools run through
/// `runuser`. A detached watchdog stops the server and removes the folder when the test process is
/// gone, however it ended; a normal exit also stops it at once (`atexit`). When the server cannot
/// start, ``shared()`` throws the reason: a test that needs it fails rather than skipping.
package final class PostgresCluster: Sendable {
    /// The superuser the tests connect as (password authentication, scram-sha-256).
    package let user = "bulkwatch"
    package let password: String
    package let port: Int
    /// The unix socket's directory.
    package let directory: String
    private let binaries: String
    private let asPostgres: Bool
    private let databases = Mutex<[String: String]>([:])

    private static let instance = Mutex<Result<PostgresCluster, ClusterFailure>?>(nil)

    package struct ClusterFailure: Error, CustomStringConvertible {
        package var description: String
    }

    /// The process's cluster, started the first time.
    package static func shared() throws -> PostgresCluster {
        try instance.withLock { state in
            if state == nil {
                state = Result { try PostgresCluster(durable: false) }.mapError { ClusterFailure(description: "\($0)") }
            }
            return try state!.get()
        }
    }

    /// The database for `key` (a test's directory and store name), created empty the first time.
    package func database(for key: String) throws -> String {
        try databases.withLock { databases in
            if let name = databases[key] { return name }
            let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            try tool("createdb", ["-h", "127.0.0.1", "-p", "\(port)", "-U", user, name])
            databases[key] = name
            return name
        }
    }

    /// A `postgres://` URL for `database` (no password: that comes from the environment it is parsed with).
    package func url(database: String) -> String {
        "postgres://\(user)@127.0.0.1:\(port)/\(database)?sslmode=disable"
    }

    /// A cluster of its own (not the process's shared one), for `bulkwatch-bench`: `durable` keeps
    /// PostgreSQL's defaults (`fsync`, `synchronous_commit`, `full_page_writes` on), so that a commit is
    /// on disk when it returns, as SQLite's `synchronous=FULL` is, and the two can be compared.
    /// Stopped when the process ends, like the shared one.
    package static func dedicated(durable: Bool) throws -> PostgresCluster {
        let cluster = try PostgresCluster(durable: durable)
        let first = dedicatedClusters.withLock { clusters in
            clusters.append(cluster)
            return clusters.count == 1
        }
        if first { atexit { PostgresCluster.dedicatedClusters.withLock { $0 }.forEach { $0.stopNow() } } }
        return cluster
    }

    private static let dedicatedClusters = Mutex<[PostgresCluster]>([])

    private init(durable: Bool) throws {
        binaries = try Self.findBinaries()
        asPostgres = geteuid() == 0
        var template = Array("/tmp/bulkwatch-pg-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw ClusterFailure(description: "cannot make a temporary folder: \(String(cString: strerror(errno)))")
        }
        directory = String(cString: made)
        password = UUID().uuidString
        let passwordFile = directory + "/password"
        try Data(password.utf8).write(to: URL(fileURLWithPath: passwordFile))
        if asPostgres {
            try runProcess("/bin/chown", ["-R", "postgres:postgres", directory])
        }
        let run = { [binaries, asPostgres, password] (name: String, arguments: [String]) throws -> [UInt8] in
            try Self.tool(name, arguments, binaries: binaries, asPostgres: asPostgres, password: password)
        }
        _ = try run(
            "initdb",
            [
                "-D", directory + "/data", "-U", user, "--pwfile", passwordFile, "--auth", "scram-sha-256",
                "-E", "UTF8", "--locale", "C", "--no-sync",
            ])
        // Watching before starting: a test process that dies while the server starts leaves nothing either.
        Self.watch(directory: directory, stop: Self.stopCommand(binaries, directory, asPostgres))
        port = try Self.start(directory: directory, durable: durable, tool: run)
        atexit { PostgresCluster.instance.withLock { try? $0?.get() }?.stopNow() }
    }

    /// Starts the server on a free port (tried three times: another process may take the port first).
    private static func start(directory: String, durable: Bool, tool: (String, [String]) throws -> [UInt8]) throws
        -> Int
    {
        var lastError = ""
        for _ in 0..<3 {
            let candidate = try reserveFreePort()
            do {
                let options =
                    "-c listen_addresses=127.0.0.1 -p \(candidate) -k \(directory) -c max_connections=200"
                    + (durable ? "" : " -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
                _ = try tool(
                    "pg_ctl",
                    ["-D", directory + "/data", "-l", directory + "/server.log", "-w", "-o", options, "start"])
                return candidate
            } catch {
                let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
                lastError = "\(error) " + log.split(separator: "\n").suffix(5).joined(separator: " | ")
            }
        }
        throw ClusterFailure(description: "PostgreSQL did not start in \(directory): \(lastError)")
    }

    /// `initdb` and `pg_ctl` of the newest installed PostgreSQL.
    private static func findBinaries() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap(Int.init).sorted()
        for version in versions.reversed()
        where FileManager.default.isExecutableFile(
            atPath: "\(root)/\(version)/bin/initdb")
        {
            return "\(root)/\(version)/bin"
        }
        throw ClusterFailure(
            description:
                "no PostgreSQL server binaries under \(root)/*/bin (run scripts/setup.sh, or apt-get install postgresql)"
        )
    }

    /// Runs a server tool, as `postgres` when the tests run as root.
    @discardableResult
    private func tool(_ name: String, _ arguments: [String]) throws -> [UInt8] {
        try Self.tool(name, arguments, binaries: binaries, asPostgres: asPostgres, password: password)
    }

    private static func tool(
        _ name: String, _ arguments: [String], binaries: String, asPostgres: Bool, password: String
    ) throws -> [UInt8] {
        let program = binaries + "/" + name
        let command = ["PGPASSWORD=\(password)", program] + arguments
        if asPostgres { return try spawn(["/usr/sbin/runuser", "-u", "postgres", "--", "/usr/bin/env"] + command) }
        return try spawn(["/usr/bin/env"] + command)
    }

    /// Runs `arguments` to completion with its output in a temporary file, reaping it with `waitpid`.
    /// Not Foundation's `Process`: `pg_ctl start` leaves a daemon behind, and `Process` was seen
    /// never to notice such a child's exit (a zombie, and `waitUntilExit` blocking for good).
    private static func spawn(_ arguments: [String]) throws -> [UInt8] {
        let output = NSTemporaryDirectory() + "bulkwatch-pg-tool-\(UUID().uuidString)"
        defer { unlink(output) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var argv = arguments.map { strdup($0) }
        argv.append(nil)
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, arguments[0], &actions, nil, argv, environ)
        guard spawned == 0 else {
            throw ClusterFailure(description: "cannot run \(arguments[0]): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? Data(contentsOf: URL(fileURLWithPath: output))).map { Array($0) } ?? []
        // WIFEXITED && WEXITSTATUS == 0, spelled out (the C macros are not imported).
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            let last = String(decoding: text, as: UTF8.self).split(separator: "\n").suffix(5).joined(separator: " | ")
            throw ClusterFailure(
                description: "\(arguments.last(where: { !$0.hasPrefix("-") }) ?? "") failed (status \(status)): \(last)"
            )
        }
        return text
    }

    private static func stopCommand(_ binaries: String, _ directory: String, _ asPostgres: Bool) -> String {
        let stop = "\(binaries)/pg_ctl -D \(directory)/data -m immediate stop"
        return asPostgres ? "/usr/sbin/runuser -u postgres -- \(stop)" : stop
    }

    /// Stops the server now (the end of the test process).
    package func stopNow() {
        _ = try? Self.spawn([
            "/bin/sh", "-c", Self.stopCommand(binaries, directory, asPostgres) + "; rm -rf \(directory)",
        ])
    }

    /// A shell in its own session that waits for this process to end, then stops the server and
    /// removes the folder: nothing is left behind when the test process is killed.
    private static func watch(directory: String, stop: String) {
        let script =
            "while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; \(stop) >/dev/null 2>&1; rm -rf \(directory)"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        process.arguments = ["/bin/sh", "-c", script]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try? process.run()
    }
}
