import ArgumentParser
import Foundation

/// `cairn replica wipe`: removes a stopped replica's directory, as the apiserver does on its own
/// host when a volume or a replica is deleted; in a cluster it runs as a Job on the pool's node.
/// It removes only what is recognisably a replica (of the volume named, when named) and never
/// one that a replica process is serving.
struct ReplicaWipeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wipe",
        abstract: "Remove a stopped replica's directory (and its volume's folder, once empty).",
        discussion: """
            Refuses while a replica process holds the directory, when the directory holds files but no \
            replica.json, and when replica.json names another volume than --volume. A directory that is \
            not there is not an error: a wipe can run twice.
            """)

    @Option(help: "The replica's directory.")
    var dir: String

    @Option(help: "The volume the replica must belong to (as its replica.json says, once a controller connected).")
    var volume: String?

    private struct Identity: Decodable { var volume: String? }

    func run() throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: dir, isDirectory: &isDir) else {
            print("cairn: \(dir) is not there: nothing to remove")
            return
        }
        guard isDir.boolValue else { throw ValidationError("\(dir) is not a directory") }
        let entries = try fm.contentsOfDirectory(atPath: dir).filter { $0 != "lock" }
        if !entries.isEmpty {
            guard let data = fm.contents(atPath: dir + "/replica.json") else {
                throw ValidationError("\(dir) holds \(entries.count) file(s) but no replica.json: not removed")
            }
            guard let id = try? JSONDecoder().decode(Identity.self, from: data) else {
                throw ValidationError("\(dir)/replica.json cannot be read: not removed")
            }
            if let want = volume, let have = id.volume, have != want {
                throw ValidationError("\(dir) holds a replica of volume \(have), not \(want): not removed")
            }
        }
        // Last: a wrong directory is refused for good; a replica still running (its pod stopping)
        // only until it has stopped, and the Job retries.
        try DirectoryLock.acquire(dir)
        try fm.removeItem(atPath: dir)
        let parent = (dir as NSString).deletingLastPathComponent
        if (try? fm.contentsOfDirectory(atPath: parent))?.isEmpty == true { try? fm.removeItem(atPath: parent) }
        print("cairn: removed \(dir)")
    }
}
