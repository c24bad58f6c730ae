// DWARF call-frame information for StackUnwinder: finding a pc's FDE (through the
// .eh_frame_hdr binary-search table, or by scanning .eh_frame), parsing its CIE and FDE,
// and running their CFA programs up to the pc to get the unwind rule (CFA base and
// offset, where the return address and rbp are saved).  Every read is bounded to the
// module's mapping (CFIReader); nothing allocates.

import Glibc
import CSlabguardShim

/// Bounded little-endian reader over mapped .eh_frame / .eh_frame_hdr bytes.
struct CFIReader {
    var p: UInt
    var end: UInt
    var ok = true

    @inline(__always)
    mutating func take(_ n: UInt) -> UInt? {
        guard ok, p <= end, end - p >= n else { ok = false; return nil }
        let at = p
        p += n
        return at
    }
    mutating func u8() -> UInt8 { take(1).map { StackDebugSupport.load($0, as: UInt8.self) } ?? 0 }
    mutating func u16() -> UInt16 { take(2).map { StackDebugSupport.load($0, as: UInt16.self) } ?? 0 }
    mutating func u32() -> UInt32 { take(4).map { StackDebugSupport.load($0, as: UInt32.self) } ?? 0 }
    mutating func u64() -> UInt { take(8).map { StackDebugSupport.load($0, as: UInt.self) } ?? 0 }
    mutating func skip(_ n: UInt) { _ = take(n) }

    mutating func uleb() -> UInt {
        var result: UInt = 0, shift: UInt = 0
        while ok {
            let b = u8()
            if shift < 64 { result |= UInt(b & 0x7F) << shift }
            shift += 7
            if b & 0x80 == 0 { break }
        }
        return result
    }

    mutating func sleb() -> Int {
        var result: UInt = 0, shift: UInt = 0, b: UInt8 = 0
        while ok {
            b = u8()
            if shift < 64 { result |= UInt(b & 0x7F) << shift }
            shift += 7
            if b & 0x80 == 0 { break }
        }
        if shift < 64 && b & 0x40 != 0 { result |= UInt.max << shift }
        return Int(bitPattern: result)
    }

    /// Reads a DW_EH_PE-encoded pointer (absptr/uleb/sleb/udata2-8/sdata2-8, pcrel/datarel,
    /// indirect when `deref`). Unsupported encodings clear `ok`.
    mutating func encoded(_ enc: UInt8, dataBase: UInt, deref: Bool = true) -> UInt {
        if enc == 0xFF { return 0 }
        let field = p
        var v: UInt
        switch enc & 0x0F {
        case 0x00, 0x04, 0x0C: v = u64()
        case 0x01: v = uleb()
        case 0x02: v = UInt(u16())
        case 0x03: v = UInt(u32())
        case 0x09: v = UInt(bitPattern: sleb())
        case 0x0A: v = UInt(bitPattern: Int(Int16(bitPattern: u16())))
        case 0x0B: v = UInt(bitPattern: Int(Int32(bitPattern: u32())))
        default: ok = false; return 0
        }
        switch enc & 0x70 {
        case 0x00: break
        case 0x10: v = v &+ field
        case 0x30:
            guard dataBase != 0 else { ok = false; return 0 }
            v = v &+ dataBase
        default: ok = false; return 0
        }
        if enc & 0x80 != 0 && deref && ok {
            guard v & 7 == 0, v >= 0x10000 else { ok = false; return 0 }
            v = StackDebugSupport.load(v, as: UInt.self)
        }
        return v
    }
}

/// What we need from a CIE.
struct CIEInfo {
    var codeAlign: UInt = 1
    var dataAlign = -8
    var raRegister: UInt = 16
    var fdeEncoding: UInt8 = 0
    var hasAugmentationData = false
    var isSignalFrame = false
    var program: UInt = 0
    var programEnd: UInt = 0
}

/// Register rules of one CFA table row (only CFA, rbp and the return address are tracked).
struct RowRules {
    var cfaRegister: UInt = 7
    var cfaOffset = 8
    var cfaIsExpression = false
    var rbpKind: UInt8 = 0      // 0 same value, 1 saved at CFA + offset, 2 undefined, 3 other
    var rbpOffset = 0
    var raKind: UInt8 = 0
    var raOffset = 0
}

enum DwarfCFI {
    /// Computes the unwind rule for `pc` in the module whose .eh_frame_hdr is at `ehFrameHdr`.
    static func rule(for pc: UInt, ehFrameHdr hdr: UInt, low: UInt, high: UInt, linearScan: Bool) -> UnwindRule {
        var rule = UnwindRule()
        let fde = findFDE(pc, hdr, low, high, linearScan)
        guard fde != 0 else { return rule }
        var cie = CIEInfo()
        var begin: UInt = 0, program: UInt = 0, programEnd: UInt = 0
        guard parseFDE(fde, pc, low, high, &cie, &begin, &program, &programEnd), !cie.isSignalFrame else { return rule }
        var row = RowRules()
        var loc = begin
        guard execute(cie.program, cie.programEnd, UInt.max, &cie, &row, initial: RowRules(), &loc) else { return rule }
        let initial = row
        guard execute(program, programEnd, pc, &cie, &row, initial: initial, &loc) else { return rule }
        if row.raKind == 2 {
            rule.kind = UnwindRule.end
            return rule
        }
        guard !row.cfaIsExpression, row.cfaRegister == 7 || row.cfaRegister == 6, row.raKind == 1 else { return rule }
        rule.kind = UnwindRule.step
        rule.cfaIsRbp = row.cfaRegister == 6
        rule.cfaOffset = row.cfaOffset
        rule.raOffset = row.raOffset
        switch row.rbpKind {
        case 0: rule.rbpRule = 0
        case 1: rule.rbpRule = 1; rule.rbpOffset = row.rbpOffset
        default: rule.rbpRule = 2
        }
        return rule
    }

    /// FDE address for `pc` via the .eh_frame_hdr search table (linear .eh_frame scan if absent).
    static func findFDE(_ pc: UInt, _ hdr: UInt, _ low: UInt, _ high: UInt, _ linearScan: Bool) -> UInt {
        guard hdr >= low, hdr < high else { return 0 }
        var r = CFIReader(p: hdr, end: high)
        let version = r.u8(), framePtrEnc = r.u8(), countEnc = r.u8(), tableEnc = r.u8()
        guard r.ok, version == 1 else { return 0 }
        let ehFrame = r.encoded(framePtrEnc, dataBase: hdr)
        guard r.ok else { return 0 }
        if countEnc == 0xFF || tableEnc == 0xFF || linearScan { return scanEhFrame(pc, ehFrame, low, high) }
        let count = r.encoded(countEnc, dataBase: hdr)
        let table = r.p
        let fieldSize: UInt
        switch tableEnc & 0x0F {
        case 0x02, 0x0A: fieldSize = 2
        case 0x03, 0x0B: fieldSize = 4
        case 0x00, 0x04, 0x0C: fieldSize = 8
        default: return scanEhFrame(pc, ehFrame, low, high)
        }
        guard r.ok, count > 0, table <= high, count <= (high - table) / (2 * fieldSize) else { return 0 }
        var lo: UInt = 0, hi = count   // find the last entry whose initial location <= pc
        if tableEnc == 0x3B {          // datarel | sdata4: the common, fast case
            while lo < hi {
                let mid = (lo + hi) >> 1
                let loc = hdr &+ UInt(bitPattern: Int(StackDebugSupport.load(table + mid * 8, as: Int32.self)))
                if loc <= pc { lo = mid + 1 } else { hi = mid }
            }
            guard lo > 0 else { return 0 }
            return hdr &+ UInt(bitPattern: Int(StackDebugSupport.load(table + (lo - 1) * 8 + 4, as: Int32.self)))
        }
        while lo < hi {
            let mid = (lo + hi) >> 1
            var e = CFIReader(p: table + mid * 2 * fieldSize, end: high)
            let loc = e.encoded(tableEnc, dataBase: hdr)
            guard e.ok else { return 0 }
            if loc <= pc { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return 0 }
        var e = CFIReader(p: table + (lo - 1) * 2 * fieldSize + fieldSize, end: high)
        let fde = e.encoded(tableEnc, dataBase: hdr)
        return e.ok ? fde : 0
    }

    /// Walks .eh_frame entry by entry (only when the header has no search table).
    static func scanEhFrame(_ pc: UInt, _ ehFrame: UInt, _ low: UInt, _ high: UInt) -> UInt {
        var at = ehFrame
        var guardCount = 0
        while at >= low && at < high && guardCount < 1 << 20 {
            guardCount += 1
            var r = CFIReader(p: at, end: high)
            let length = UInt(r.u32())
            guard r.ok, length != 0, length != 0xFFFF_FFFF, length <= high - r.p else { return 0 }
            let id = r.u32()
            if r.ok && id != 0 {
                var cie = CIEInfo()
                var begin: UInt = 0, program: UInt = 0, programEnd: UInt = 0
                if parseFDE(at, pc, low, high, &cie, &begin, &program, &programEnd) { return at }
            }
            at = at + 4 + length
        }
        return 0
    }

    /// Parses the CIE at `at`.
    static func parseCIE(_ at: UInt, _ low: UInt, _ high: UInt, _ cie: inout CIEInfo) -> Bool {
        guard at >= low else { return false }
        var r = CFIReader(p: at, end: high)
        let length = UInt(r.u32())
        guard r.ok, length >= 4, length != 0xFFFF_FFFF, length <= high - r.p else { return false }
        r.end = r.p + length
        guard r.u32() == 0 else { return false }   // CIE id
        let version = r.u8()
        guard r.ok, version == 1 || version == 3 || version == 4 else { return false }
        let augmentation = r.p
        var augLength: UInt = 0
        while r.ok && r.u8() != 0 { augLength += 1 }
        guard r.ok, augLength < 16 else { return false }
        @inline(__always) func aug(_ i: UInt) -> UInt8 { StackDebugSupport.load(augmentation + i, as: UInt8.self) }
        var i: UInt = 0
        if augLength >= 2 && aug(0) == 0x65 && aug(1) == 0x68 {   // "eh": old GCC pointer
            r.skip(8)
            i = 2
        }
        if version == 4 { r.skip(2) }   // address_size, segment_selector_size
        cie.codeAlign = r.uleb()
        cie.dataAlign = r.sleb()
        cie.raRegister = version == 1 ? UInt(r.u8()) : r.uleb()
        if i < augLength && aug(i) == 0x7A {   // 'z'
            cie.hasAugmentationData = true
            let dataLength = r.uleb()
            let dataEnd = r.p &+ dataLength
            guard r.ok, dataEnd <= r.end, dataEnd >= r.p else { return false }
            i += 1
            while i < augLength {
                switch aug(i) {
                case 0x4C: _ = r.u8()                                                   // 'L' LSDA encoding
                case 0x50: let enc = r.u8(); _ = r.encoded(enc, dataBase: 0, deref: false)   // 'P' personality
                case 0x52: cie.fdeEncoding = r.u8()                                     // 'R' FDE encoding
                case 0x53: cie.isSignalFrame = true                                     // 'S'
                default: break                                                          // 'B', 'G', ...
                }
                i += 1
            }
            r.p = dataEnd
        } else if i < augLength {
            return false   // unknown augmentation without length: cannot skip its data
        }
        cie.program = r.p
        cie.programEnd = r.end
        return r.ok
    }

    /// Parses the FDE at `fde`; succeeds only when `pc` lies in its range.
    static func parseFDE(_ fde: UInt, _ pc: UInt, _ low: UInt, _ high: UInt, _ cie: inout CIEInfo,
                         _ begin: inout UInt, _ program: inout UInt, _ programEnd: inout UInt) -> Bool {
        guard fde >= low else { return false }
        var r = CFIReader(p: fde, end: high)
        let length = UInt(r.u32())
        guard r.ok, length >= 8, length != 0xFFFF_FFFF, length <= high - r.p else { return false }
        r.end = r.p + length
        let ciePointerField = r.p
        let cieOffset = UInt(r.u32())
        guard r.ok, cieOffset != 0, cieOffset <= ciePointerField,
              parseCIE(ciePointerField - cieOffset, low, high, &cie) else { return false }
        begin = r.encoded(cie.fdeEncoding, dataBase: 0)
        let range = r.encoded(cie.fdeEncoding & 0x0F, dataBase: 0)
        guard r.ok, pc >= begin, pc - begin < range else { return false }
        if cie.hasAugmentationData { r.skip(r.uleb()) }
        program = r.p
        programEnd = r.end
        return r.ok
    }

    @inline(__always)
    private static func setRule(_ row: inout RowRules, _ reg: UInt, _ kind: UInt8, _ offset: Int, _ ra: UInt) {
        if reg == 6 {
            row.rbpKind = kind
            row.rbpOffset = offset
        } else if reg == ra {
            row.raKind = kind
            row.raOffset = offset
        }
    }

    @inline(__always)
    private static func restoreRule(_ row: inout RowRules, _ reg: UInt, _ initial: RowRules, _ ra: UInt) {
        if reg == 6 {
            row.rbpKind = initial.rbpKind
            row.rbpOffset = initial.rbpOffset
        } else if reg == ra {
            row.raKind = initial.raKind
            row.raOffset = initial.raOffset
        }
    }

    /// Runs a CFA program until the location advances past `target`.
    static func execute(_ start: UInt, _ end: UInt, _ target: UInt, _ cie: inout CIEInfo,
                        _ row: inout RowRules, initial: RowRules, _ loc: inout UInt) -> Bool {
        var r = CFIReader(p: start, end: end)
        let ca = cie.codeAlign, da = cie.dataAlign, ra = cie.raRegister
        // DW_CFA_remember_state stack: 4 levels are plenty for compiler output.
        var saved0 = RowRules(), saved1 = RowRules(), saved2 = RowRules(), saved3 = RowRules()
        var depth = 0
        while r.ok && r.p < r.end {
            let op = r.u8()
            switch op >> 6 {
            case 1:   // DW_CFA_advance_loc
                loc = loc &+ UInt(op & 0x3F) &* ca
                if loc > target { return true }
            case 2:   // DW_CFA_offset
                setRule(&row, UInt(op & 0x3F), 1, Int(bitPattern: r.uleb()) &* da, ra)
            case 3:   // DW_CFA_restore
                restoreRule(&row, UInt(op & 0x3F), initial, ra)
            default:
                switch op {
                case 0x00: break                                                         // nop
                case 0x01:                                                               // set_loc
                    loc = r.encoded(cie.fdeEncoding, dataBase: 0)
                    if loc > target { return r.ok }
                case 0x02, 0x03, 0x04:                                                   // advance_loc1/2/4
                    let delta = op == 0x02 ? UInt(r.u8()) : op == 0x03 ? UInt(r.u16()) : UInt(r.u32())
                    loc = loc &+ delta &* ca
                    if loc > target { return r.ok }
                case 0x05: let reg = r.uleb(); setRule(&row, reg, 1, Int(bitPattern: r.uleb()) &* da, ra)
                case 0x06: restoreRule(&row, r.uleb(), initial, ra)                      // restore_extended
                case 0x07: setRule(&row, r.uleb(), 2, 0, ra)                             // undefined
                case 0x08: setRule(&row, r.uleb(), 0, 0, ra)                             // same_value
                case 0x09: let reg = r.uleb(); _ = r.uleb(); setRule(&row, reg, 3, 0, ra) // register
                case 0x0A:                                                               // remember_state
                    switch depth {
                    case 0: saved0 = row
                    case 1: saved1 = row
                    case 2: saved2 = row
                    case 3: saved3 = row
                    default: return false
                    }
                    depth += 1
                case 0x0B:                                                               // restore_state
                    guard depth > 0 else { return false }
                    depth -= 1
                    // The CFA is part of the saved row, as the spec requires.
                    switch depth {
                    case 0: row = saved0
                    case 1: row = saved1
                    case 2: row = saved2
                    default: row = saved3
                    }
                case 0x0C:                                                               // def_cfa
                    row.cfaRegister = r.uleb()
                    row.cfaOffset = Int(bitPattern: r.uleb())
                    row.cfaIsExpression = false
                case 0x0D: row.cfaRegister = r.uleb(); row.cfaIsExpression = false       // def_cfa_register
                case 0x0E: row.cfaOffset = Int(bitPattern: r.uleb())                     // def_cfa_offset
                case 0x0F: r.skip(r.uleb()); row.cfaIsExpression = true                  // def_cfa_expression
                case 0x10, 0x16:                                                         // expression, val_expression
                    let reg = r.uleb(); r.skip(r.uleb()); setRule(&row, reg, 3, 0, ra)
                case 0x11: let reg = r.uleb(); setRule(&row, reg, 1, r.sleb() &* da, ra) // offset_extended_sf
                case 0x12:                                                               // def_cfa_sf
                    row.cfaRegister = r.uleb()
                    row.cfaOffset = r.sleb() &* da
                    row.cfaIsExpression = false
                case 0x13: row.cfaOffset = r.sleb() &* da                                // def_cfa_offset_sf
                case 0x14: let reg = r.uleb(); _ = r.uleb(); setRule(&row, reg, 3, 0, ra) // val_offset
                case 0x15: let reg = r.uleb(); _ = r.sleb(); setRule(&row, reg, 3, 0, ra) // val_offset_sf
                case 0x2E: _ = r.uleb()                                                  // GNU_args_size
                case 0x2F:                                                               // GNU_negative_offset_extended
                    let reg = r.uleb()
                    setRule(&row, reg, 1, 0 &- (Int(bitPattern: r.uleb()) &* da), ra)
                default: return false
                }
            }
        }
        return r.ok
    }
}
