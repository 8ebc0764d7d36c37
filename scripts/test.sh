#!/usr/bin/env bash
# Second command of the README: set up, build, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The tree stays formatted (.swift-format: 4 spaces, 120 columns); `swift format -i -r -p Sources Tests Package.swift` fixes it.
swift format lint --strict -r -p Sources Tests Package.swift
swift build --build-tests
# One test at a time: many tests run the real binary against real servers and wait on real time; run side
# by side on two cores they starve each other (about 275 s serially, within CI's 90 minutes by far).
swift test --skip-build --no-parallel
