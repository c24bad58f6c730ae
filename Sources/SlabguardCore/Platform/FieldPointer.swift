// FieldPointer — the one place the core derives the address of a field from the address
// of its record (a cache record's locks, a state region's parts, a tag record's name):
// everything else asks for `record.field(\.name)`.  The key path must name a stored
// field (a computed property has no offset: that traps at once instead of pointing at
// the wrong bytes); with a literal key path the optimizer folds it to a constant offset.

extension UnsafeMutablePointer {
    /// A pointer to the stored field `path` of the pointee.
    @inline(__always) func field<T>(_ path: KeyPath<Pointee, T>) -> UnsafeMutablePointer<T> {
        guard let offset = MemoryLayout<Pointee>.offset(of: path) else { preconditionFailure("slabguard: not a stored field") }
        return (UnsafeMutableRawPointer(self) + offset).assumingMemoryBound(to: T.self)
    }
}

extension UnsafePointer {
    /// A pointer to the stored field `path` of the pointee.
    @inline(__always) func field<T>(_ path: KeyPath<Pointee, T>) -> UnsafePointer<T> {
        guard let offset = MemoryLayout<Pointee>.offset(of: path) else { preconditionFailure("slabguard: not a stored field") }
        return (UnsafeRawPointer(self) + offset).assumingMemoryBound(to: T.self)
    }
}

/// Whether `path` is the first stored field of `Root` (records nested at offset 0).
@inline(__always) func isFirstField<Root, T>(_ path: KeyPath<Root, T>) -> Bool {
    MemoryLayout<Root>.offset(of: path) == 0
}
