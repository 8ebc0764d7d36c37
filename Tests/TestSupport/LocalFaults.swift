import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A small file system of its own for a state directory, so a test can fill it up: a tmpfs when `mount` is
/// allowed, else a loop-mounted ext4 image. Where neither can be mounted (an unprivileged CI runner) ``make``
/// says so and returns nil: a read-only directory would not do, because a database that is already open keeps
/// writing through its open descriptors whatever the directory's mode.
package final class SmallVolume: @unchecked Sendable {
    package let path: String
    /// What was mounted, for the test output: `tmpfs (6 MiB)`, `loop-mounted ext4 (6 MiB)`.
    package let kind: String
    private let image: String?
    private var fillerPath: String { path + "/filler" }

    private init(path: String, kind: String, image: String?) {
        self.path = path
        self.kind = kind
        self.image = image
    }

    package static func make(megabytes: Int) -> SmallVolume? {
        guard let directory = try? makeTemporaryDirectory("volume"), let mount = tool("mount") else {
            print("disk-full fault: CANNOT RUN (no mount command)")
            return nil
        }
        do {
            try runProcess(mount, ["-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0700", "tmpfs", directory])
            return SmallVolume(path: directory, kind: "tmpfs (\(megabytes) MiB)", image: nil)
        } catch {
            let tmpfsError = "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
            let image = directory + ".img"
            do {
                guard let mkfs = tool("mkfs.ext4") else { throw ProcessFailure(description: "no mkfs.ext4") }
                _ = FileManager.default.createFile(atPath: image, contents: nil)
                try runProcess("/usr/bin/truncate", ["-s", "\(megabytes)M", image])
                try runProcess(mkfs, ["-q", "-F", image])
                try runProcess(mount, ["-o", "loop", image, directory])
                chmod(directory, 0o700)
                return SmallVolume(path: directory, kind: "loop-mounted ext4 (\(megabytes) MiB)", image: image)
            } catch {
                try? FileManager.default.removeItem(atPath: image)
                print(
                    "disk-full fault: CANNOT RUN (cannot mount a small file system: tmpfs: \(tmpfsError); loop: \(error))"
                )
                return nil
            }
        }
    }

    /// Writes a filler file until the file system refuses; returns how many bytes it took.
    @discardableResult
    package func fill() throws -> Int {
        let fd = open(fillerPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0x5A, count: 16 * 1024)
        var total = 0
        // Smaller and smaller writes, to leave not even a few blocks free.
        var size = chunk.count
        while size >= 512 {
            let written = chunk.withUnsafeBytes { write(fd, $0.baseAddress, size) }
            if written > 0 {
                total += written
            } else {
                size /= 2
            }
        }
        fsync(fd)
        return total
    }

    /// Deletes the filler: the space is back.
    package func unfill() {
        unlink(fillerPath)
    }

    /// Unmounts (lazily, in case something still holds a file) and deletes the mount point.
    package func remove() {
        if let umount = Self.tool("umount") { _ = try? runProcess(umount, ["-l", path]) }
        rmdir(path)
        if let image { unlink(image) }
    }

    private static func tool(_ name: String) -> String? {
        ["/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"].map { $0 + name }.first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }
}

/// libfaketime, to make the wall clock of a child process jump (`LD_PRELOAD`, `FAKETIME_TIMESTAMP_FILE`).
package enum FakeTime {
    /// Path of `libfaketime.so.1` when the Debian package `faketime` (libfaketime) is installed.
    package static var library: String? {
        let base = "/usr/lib"
        let architectures = (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []
        return architectures.sorted().map { "\(base)/\($0)/faketime/libfaketime.so.1" }.first {
            FileManager.default.fileExists(atPath: $0)
        }
    }

    /// An `LD_PRELOAD` value that fakes only the wall clock, or nil (with the reason printed) when libfaketime
    /// or a C compiler is missing.
    ///
    /// libfaketime shifts every absolute `timerfd_settime` deadline by its offset, even on monotonic clocks and
    /// with `FAKETIME_DONT_FAKE_MONOTONIC=1`; libdispatch arms its timers that way, so after a backward jump every
    /// `Task.sleep` would last an hour longer — an artefact no real clock step causes (the kernel never moves
    /// `CLOCK_MONOTONIC`/`CLOCK_BOOTTIME` timers). A tiny library preloaded first passes those calls straight to
    /// the kernel.
    package static func preload(in directory: String) -> String? {
        guard let library else {
            print(
                "clock-jump fault: CANNOT RUN (libfaketime not installed; scripts/setup.sh installs Debian's faketime)")
            return nil
        }
        let compilers =
            ["/usr/bin/cc", "/usr/bin/clang", "/usr/bin/gcc"]
            + (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/clang" }
        guard let compiler = compilers.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            print("clock-jump fault: CANNOT RUN (no C compiler for the timerfd pass-through)")
            return nil
        }
        let source = directory + "/timerfd-passthrough.c"
        let shim = directory + "/timerfd-passthrough.so"
        let code = """
            #define _GNU_SOURCE
            #include <sys/syscall.h>
            #include <sys/timerfd.h>
            #include <unistd.h>
            int timerfd_settime(int fd, int flags, const struct itimerspec *value, struct itimerspec *old) {
                return (int)syscall(SYS_timerfd_settime, fd, flags, value, old);
            }
            int timerfd_gettime(int fd, struct itimerspec *value) {
                return (int)syscall(SYS_timerfd_gettime, fd, value);
            }

            """
        do {
            try code.write(toFile: source, atomically: true, encoding: .utf8)
            try runProcess(compiler, ["-shared", "-fPIC", "-O2", "-o", shim, source])
        } catch {
            print("clock-jump fault: CANNOT RUN (cannot build the timerfd pass-through: \(error))")
            return nil
        }
        return shim + " " + library
    }
}
