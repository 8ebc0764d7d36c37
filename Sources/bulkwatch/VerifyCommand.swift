import ArgumentParser
import BulkWatch
import Foundation

/// `bulkwatch verify`: the receiver's side of webhook signing, for whoever runs the endpoint.
///
/// Exit codes: 0 valid, 1 invalid (each reason on its own line), 64 usage, 78 configuration (the
/// secret file is missing, readable by others, or not `whsec_…`).
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a captured webhook request's Standard Webhooks signature and timestamp.",
        discussion: """
            Reads the request as captured — optional request line, headers, an empty line, the exact body — \
            from FILE or standard input, and says whether webhook-signature matches one of the secrets \
            (one whsec_ per line, file mode 0600) and webhook-timestamp is within the tolerance, and why not. \
            Example: bulkwatch verify --secret-file webhook.secret request.txt
            """)

    @Option(help: "File with the whsec_ secret(s), one per line (must not be readable by group or others).")
    var secretFile: String

    @Option(help: "How far webhook-timestamp may be from now, either way (e.g. 5m, 30s). [5m]")
    var tolerance = "5m"

    @Argument(help: "The captured request; - or nothing reads standard input.")
    var request: String?

    func validate() throws {
        guard let duration = Duration(parsing: tolerance), duration >= .zero else {
            throw ValidationError("--tolerance: invalid duration '\(tolerance)': use e.g. 30s, 5m")
        }
    }

    func run() throws {
        let secrets: [WebhookSecret]
        do {
            secrets = try WebhookSecret.parseList(
                try SecretReference.readPrivateFile(secretFile, what: "--secret-file"))
        } catch let error as SettingError {
            throw ConfigurationError(error.message)
        } catch {
            throw ConfigurationError("--secret-file \(secretFile): \(error)")
        }
        let bytes: [UInt8]
        if let request, request != "-" {
            guard let data = FileManager.default.contents(atPath: request) else {
                throw ValidationError("cannot read the request file \(request)")
            }
            bytes = Array(data)
        } else {
            bytes = Array(FileHandle.standardInput.readDataToEndOfFile())
        }
        let captured: WebhookVerifier.CapturedRequest
        do {
            captured = try WebhookVerifier.CapturedRequest(parsing: bytes)
        } catch {
            print("invalid: \(error)")
            throw ExitCode(1)
        }
        let verifier = WebhookVerifier(
            secrets: secrets, tolerance: Duration(parsing: tolerance) ?? Defaults.signatureTolerance)
        let verdict = verifier.verify(captured)
        if verdict.isValid {
            print("valid: " + verdict.notes.joined(separator: "; "))
            return
        }
        print("invalid:")
        for problem in verdict.problems { print("  - \(problem)") }
        for note in verdict.notes { print("  ok: \(note)") }
        throw ExitCode(1)
    }
}
