import CZstd
import Foundation

/// zstd through Debian's libzstd: each stored block is one frame.
enum Zstd {
    static let level: Int32 = 3

    static func compress(_ data: UnsafeRawBufferPointer) throws(BackupError) -> Data {
        let bound = ZSTD_compressBound(data.count)
        var out = Data(count: bound)
        let n = out.withUnsafeMutableBytes { o in
            ZSTD_compress(o.baseAddress, bound, data.baseAddress, data.count, level)
        }
        guard ZSTD_isError(n) == 0 else { throw .format("zstd: \(String(cString: ZSTD_getErrorName(n)))") }
        out.count = n
        return out
    }

    /// Decompresses a frame of at most `limit` bytes.
    static func decompress(_ data: Data, limit: Int) throws(BackupError) -> Data {
        var out = Data(count: limit)
        let n = out.withUnsafeMutableBytes { o in
            data.withUnsafeBytes { i in ZSTD_decompress(o.baseAddress, limit, i.baseAddress, i.count) }
        }
        guard ZSTD_isError(n) == 0 else { throw .corrupt("zstd: \(String(cString: ZSTD_getErrorName(n)))") }
        out.count = n
        return out
    }
}
