// ELF notes (a PT_NOTE segment or an SHT_NOTE section): the GNU build id.  One parser for
// the core (notes in mapped memory, inside malloc: no allocation) and the CLI (notes
// read from a file).

public enum ElfNote {
    /// NT_GNU_BUILD_ID's descriptor in the notes at `notes` (`count` readable bytes): its
    /// offset from `notes` and its length, or nil when no note "GNU" of type 3 is there.
    public static func gnuBuildId(in notes: UnsafeRawPointer, count: Int) -> (offset: Int, count: Int)? {
        var at = 0
        while count - at >= 12 {
            let nameSize = Int(notes.loadUnaligned(fromByteOffset: at, as: UInt32.self))
            let descSize = Int(notes.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self))
            let type = notes.loadUnaligned(fromByteOffset: at + 8, as: UInt32.self)
            let name = at + 12
            let desc = name + ((nameSize + 3) & ~3)
            guard nameSize < 4096, descSize < 1 << 20, desc + descSize <= count else { return nil }
            if type == 3 && nameSize == 4 && notes.loadUnaligned(fromByteOffset: name, as: UInt32.self) == 0x0055_4E47 {  // "GNU\0"
                return (desc, descSize)
            }
            at = desc + ((descSize + 3) & ~3)
        }
        return nil
    }
}
