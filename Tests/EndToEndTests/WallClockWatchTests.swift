import Foundation
import Testing

@testable import BulkWatch
@testable import BulkWatchWatcher

@Suite("Wall clock jump detection")
struct WallClockWatchTests {
    @Test func reportsJumpsBothWaysAndNothingWhileTheClocksAgree() {
        let wall = Date(timeIntervalSince1970: 1_800_000_000)
        let start = ContinuousClock.now
        var watch = WallClockWatch(tolerance: .seconds(2), wall: wall, monotonic: start)
        // Thirty seconds on both clocks, with a little slew: no jump.
        #expect(watch.jump(wall: wall + 30.4, monotonic: start + .seconds(30)) == nil)
        // The wall clock leaps an hour ahead while 5 s pass.
        let forward = watch.jump(wall: wall + 30.4 + 3605, monotonic: start + .seconds(35))
        #expect(forward == .seconds(3600))
        // Then it is set back 2 h.
        let backward = watch.jump(wall: wall + 30.4 + 3605 + 5 - 7200, monotonic: start + .seconds(40))
        #expect(backward == .seconds(-7200))
        #expect(WallClockWatch.describe(.seconds(3600)).hasPrefix("wall clock jumped forward by 3600.0s"))
        #expect(WallClockWatch.describe(.seconds(-7200)).hasPrefix("wall clock jumped backward by 7200.0s"))
    }
}
