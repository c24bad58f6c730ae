// The wording of an `invalid tag` report (design §9): what was wrong with a tag handle.
// The check that finds it is Checks/TagCheck.swift's; the words are a report's.

/// What was wrong with a tag handle.
enum InvalidTagUse {
    case afterDestroy                         // the tag was destroyed
    case notATag(UInt)                        // no tag has this handle
    case wrongTag(buffer: UInt, owner: Int?)  // the buffer was allocated from another tag (nil: from none)

    func appendHeadline(_ w: inout ReportWriter, name: UnsafePointer<CChar>?) {
        switch self {
        case .afterDestroy:
            w.append(": tag ")
            w.append(cString: name ?? StackDebugSupport.cString("(destroyed earlier; its slot was reused)"))
            w.append(" used after destroy")
        case .notATag(let handle):
            w.append(": ")
            w.append(hex: handle)
            w.append(" is not a tag")
        case .wrongTag(let buffer, let owner):
            w.append(": buffer ")
            w.append(hex: buffer)
            if let owner {
                w.append(" was allocated from tag ")
                w.append(cString: TagTable.name(owner))
            } else {
                w.append(" was not allocated from a tag")
            }
            w.append(", freed to tag ")
            w.append(cString: name)
        }
    }

    func appendJSON(_ w: inout ReportWriter) {
        switch self {
        case .afterDestroy: w.jsonField("problem", string: "used after destroy")
        case .notATag(let handle):
            w.jsonField("problem", string: "not a tag")
            w.jsonKey("handle"); w.append("\""); w.append(hex: handle); w.append("\"")
        case .wrongTag(let buffer, let owner):
            w.jsonField("problem", string: "freed to another tag")
            w.jsonKey("address"); w.append("\""); w.append(hex: buffer); w.append("\"")
            if let owner { w.jsonField("allocated_from", cString: TagTable.name(owner)) }
        }
    }
}
