import Foundation

/// A secret held elsewhere: configuration never carries the secret itself.
///
/// `env:NAME` reads an environment variable; `file:PATH` a file only its owner can read (relative
/// paths are relative to the configuration file); `credential:NAME` a systemd credential,
/// `$CREDENTIALS_DIRECTORY/NAME` (`LoadCredential=` in the unit).
package enum SecretReference: Sendable, Equatable, CustomStringConvertible {
    case environment(String)
    case file(String)
    case credential(String)

    package init(parsing text: String, relativeTo directory: String? = nil) throws(SettingError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("env:"), trimmed.count > 4 {
            self = .environment(String(trimmed.dropFirst(4)))
        } else if trimmed.hasPrefix("file:"), trimmed.count > 5 {
            let path = String(trimmed.dropFirst(5))
            if let directory, !path.hasPrefix("/") {
                self = .file(URL(fileURLWithPath: directory).appendingPathComponent(path).standardizedFileURL.path)
            } else {
                self = .file(path)
            }
        } else if trimmed.hasPrefix("credential:"), trimmed.count > 11, !trimmed.dropFirst(11).contains("/") {
            self = .credential(String(trimmed.dropFirst(11)))
        } else {
            // Never echo the value: it may be the secret pasted in by mistake.
            throw SettingError("must be a reference — env:NAME, file:PATH or credential:NAME — never the secret itself")
        }
    }

    /// How the reference reads in messages (never the value).
    package var description: String {
        switch self {
        case .environment(let name): "env:\(name)"
        case .file(let path): "file:\(path)"
        case .credential(let name): "credential:\(name)"
        }
    }

    /// The secret's text, trimmed. Files must not be readable by group or others.
    package func resolve(environment: [String: String]) throws(SettingError) -> String {
        switch self {
        case .environment(let name):
            guard let value = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else {
                throw SettingError("\(self): the environment variable \(name) is not set")
            }
            return value
        case .file(let path):
            return try Self.readPrivateFile(path, what: "\(self)")
        case .credential(let name):
            guard let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
                throw SettingError(
                    "\(self): CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the systemd unit)")
            }
            // systemd writes credential files itself; where it grants access by an ACL they stay
            // root's, so root is accepted as their owner too.
            return try Self.readPrivateFile(
                URL(fileURLWithPath: directory).appendingPathComponent(name).path, what: "\(self)",
                systemdCredential: true)
        }
    }

    /// True for a path inside `$CREDENTIALS_DIRECTORY` (also when given as a plain path).
    private static func isSystemdCredential(_ path: String) -> Bool {
        guard let directory = ProcessInfo.processInfo.environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
            return false
        }
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        return path.hasPrefix(prefix) && !path.dropFirst(prefix.count).contains("/")
            && !path.contains("/../")
    }

    /// The most a secret file may hold; a secret, or an `oauthconf.xml`, is far smaller.
    package static let maxSecretFileBytes = 1 << 20

    /// The trimmed contents of a private file: a regular file (not a symbolic link), owned by the
    /// effective user, with no group or other permission bits.
    ///
    /// The checks are made on the open descriptor (`O_NOFOLLOW`, then `fstat`) and the content is
    /// read from that same descriptor, so the file cannot be swapped between check and read.
    /// Following a symlink would let anyone who can write the configured path point it at any
    /// owner-only file (a private key, `/proc/self/environ`) whose content would then be POSTed to
    /// the token URL; a file owned by someone else may be rewritten by them. A systemd credential
    /// (`systemdCredential`) may also be owned by root, which wrote it.
    package static func readPrivateFile(
        _ path: String, what: String, systemdCredential: Bool = false
    ) throws(SettingError) -> String {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else {
            let code = errno
            if code == ELOOP {
                throw SettingError("\(what): \(path) is a symbolic link; give the path of the file itself")
            }
            throw SettingError("\(what): \(path): \(String(cString: strerror(code)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw SettingError("\(what): \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw SettingError("\(what): \(path) is not a regular file")
        }
        let credential = systemdCredential || isSystemdCredential(path)
        guard info.st_uid == geteuid() || (credential && info.st_uid == 0) else {
            throw SettingError(
                "\(what): \(path) is owned by uid \(info.st_uid), not by the user bulkwatch runs as (uid \(geteuid()))")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw SettingError("\(what): \(path) is readable by group or others; run: chmod 600 \(path)")
        }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw SettingError("\(what): \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            data.append(contentsOf: chunk[..<count])
            guard data.count <= maxSecretFileBytes else {
                throw SettingError("\(what): \(path) is larger than \(maxSecretFileBytes >> 20) MiB: not a secret file")
            }
        }
        let value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !value.isEmpty else { throw SettingError("\(what): \(path) is empty") }
        return value
    }
}
