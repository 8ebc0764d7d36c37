import Foundation

/// A parser for the Prometheus text exposition format (0.0.4), strict enough that a malformed
/// `/metrics` answer fails the test: every sample line must be `name{labels} value`, every
/// `# TYPE` must name a known type, and samples of a family must follow its `# TYPE` line.
package struct PrometheusText: Sendable {
    package struct Sample: Sendable, Equatable {
        package var name: String
        package var labels: [String: String]
        package var value: Double
    }

    package struct ParseError: Error, CustomStringConvertible {
        package var description: String
    }

    package var types: [String: String] = [:]
    package var samples: [Sample] = []

    package init(parsing text: String) throws {
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(rawLine)
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
                if parts.count >= 4, parts[1] == "TYPE" {
                    guard ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                        throw ParseError(description: "line \(index + 1): unknown type \(parts[3])")
                    }
                    types[parts[2]] = parts[3]
                }
                continue
            }
            samples.append(try Self.sample(line, number: index + 1))
        }
        for sample in samples {
            let family = Self.family(of: sample.name)
            guard types[sample.name] != nil || types[family] != nil else {
                throw ParseError(description: "sample \(sample.name) has no # TYPE line")
            }
        }
    }

    /// The value of the one sample with this name and (a superset of) these labels; nil when absent.
    package func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = samples.filter { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }
        return matching.count == 1 ? matching[0].value : nil
    }

    static func family(of name: String) -> String {
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            return String(name.dropLast(suffix.count))
        }
        return name
    }

    static func sample(_ line: String, number: Int) throws -> Sample {
        let scalars = Array(line)
        var index = 0
        var name = ""
        while index < scalars.count, scalars[index] != "{", scalars[index] != " " {
            name.append(scalars[index])
            index += 1
        }
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }) else {
            throw ParseError(description: "line \(number): bad metric name in '\(line)'")
        }
        var labels: [String: String] = [:]
        if index < scalars.count, scalars[index] == "{" {
            index += 1
            while index < scalars.count, scalars[index] != "}" {
                var key = ""
                while index < scalars.count, scalars[index] != "=" {
                    key.append(scalars[index])
                    index += 1
                }
                guard index + 1 < scalars.count, scalars[index + 1] == "\"" else {
                    throw ParseError(description: "line \(number): label \(key) is not quoted")
                }
                index += 2
                var value = ""
                while index < scalars.count, scalars[index] != "\"" {
                    if scalars[index] == "\\", index + 1 < scalars.count {
                        index += 1
                        value.append(scalars[index] == "n" ? "\n" : scalars[index])
                    } else {
                        value.append(scalars[index])
                    }
                    index += 1
                }
                guard index < scalars.count else { throw ParseError(description: "line \(number): unterminated label") }
                index += 1
                labels[key.trimmingCharacters(in: .whitespaces)] = value
                if index < scalars.count, scalars[index] == "," { index += 1 }
            }
            guard index < scalars.count else { throw ParseError(description: "line \(number): unterminated labels") }
            index += 1
        }
        let rest = String(scalars[index...]).trimmingCharacters(in: .whitespaces).split(separator: " ")
        guard let first = rest.first else { throw ParseError(description: "line \(number): no value") }
        let valueText = String(first)
        let value: Double
        switch valueText {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let parsed = Double(valueText) else {
                throw ParseError(description: "line \(number): bad value '\(valueText)'")
            }
            value = parsed
        }
        return Sample(name: name, labels: labels, value: value)
    }
}

/// GETs `url` with curl (a real HTTP client, outside our own transport); (status, body).
package func httpGet(_ url: String) throws -> (status: Int, body: String) {
    let output = try runProcess("/usr/bin/env", ["curl", "-s", "-m", "5", "-w", "\n%{http_code}", url])
    let text = String(decoding: output, as: UTF8.self)
    guard let newline = text.lastIndex(of: "\n"), let status = Int(text[text.index(after: newline)...]) else {
        throw ProcessFailure(description: "curl gave no status for \(url)")
    }
    return (status, String(text[..<newline]))
}
