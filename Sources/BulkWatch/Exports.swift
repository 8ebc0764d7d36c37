// The app module re-exports the layers, so that `import BulkWatch` is all the command line, the
// benchmarks and an embedding package need (as Hummingbird re-exports HummingbirdCore). Only
// `public` declarations cross the package boundary; the layers' `package` API stays inside.
@_exported public import BulkWatchAuth
@_exported public import BulkWatchConfig
@_exported public import BulkWatchDelivery
@_exported public import BulkWatchDetect
@_exported public import BulkWatchOperate
@_exported public import BulkWatchSource
@_exported public import BulkWatchStore
@_exported public import BulkWatchSupport
@_exported public import BulkWatchTransport
@_exported public import BulkWatchWatcher
