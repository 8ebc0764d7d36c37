// libFuzzer target for ConfigFile.parse (see Fuzz/README.md).
//
// Input: the file's bytes. Like ConfigFile.load, bytes that are not UTF-8 never reach the parser.
// Finding = any trap, or a parse that succeeds without the guarantees the runtime relies on:
// at least one target, names unique and usable as state keys.
import BulkWatch

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfigFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
    do {
        // A directory that does not exist: parsing must not depend on files (secrets are read later).
        let file = try ConfigFile.parse(text, path: "fuzz.yaml", directory: "/nonexistent/fuzz")
        guard !file.targets.isEmpty else { fatalError("ConfigFile oracle: accepted a file without targets") }
        let names = file.targets.map(\.name)
        guard Set(names).count == names.count else { fatalError("ConfigFile oracle: duplicate target names") }
        for name in names where name.isEmpty || name.utf8.count > 64 || name.contains("/") {
            fatalError("ConfigFile oracle: target name '\(name)' cannot key state")
        }
    } catch {
        // Shown to the operator: it must be buildable for any input too.
        _ = error.description
    }
    return 0
}
