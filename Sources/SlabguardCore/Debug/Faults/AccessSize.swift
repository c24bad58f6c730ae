// AccessSize — how many bytes the faulting instruction reads or writes, for the crash
// reports (design §4: "the access size where the fault tells it").  The page fault
// itself does not say on x86-64, so the instruction at the fault's PC is decoded: the
// common data moves and arithmetic with a memory operand (legacy, SSE and VEX forms).
// Anything else gives 0, and the report says nothing about the size rather than guess.
// Reads only the instruction bytes (mapped, executable: the CPU just ran them).

enum AccessSize {
    /// Bytes accessed by the instruction at `pc`, or 0 when it is not one decoded here.
    static func ofInstruction(at pc: UInt) -> Int {
        #if arch(x86_64)
        guard pc != 0, let code = UnsafePointer<UInt8>(bitPattern: pc) else { return 0 }
        var i = 0
        var operand16 = false, rexW = false
        var repeatPrefix: UInt8 = 0
        // Legacy prefixes, then at most one REX.
        while i < 14 {
            let b = code[i]
            switch b {
            case 0x66: operand16 = true
            case 0xF2, 0xF3: repeatPrefix = b
            case 0x2E, 0x3E, 0x26, 0x36, 0x64, 0x65, 0xF0, 0x67: break
            default:
                if b & 0xF0 == 0x40 { rexW = b & 8 != 0; i += 1 }
                return decode(code + i, operand16: operand16, rexW: rexW, repeatPrefix: repeatPrefix)
            }
            i += 1
        }
        #endif
        return 0
    }

    private static func decode(_ c: UnsafePointer<UInt8>, operand16: Bool, rexW: Bool, repeatPrefix: UInt8) -> Int {
        let operand = rexW ? 8 : (operand16 ? 2 : 4)
        let op = c[0]
        switch op {
        case 0xC5, 0xC4: return vex(c)
        case 0x0F: return twoByte(c[1], operand16: operand16, rexW: rexW, repeatPrefix: repeatPrefix)
        case 0x88, 0x8A, 0xC6, 0x80, 0x82, 0x84, 0xF6, 0xFE, 0xA4, 0xAA, 0xAC: return 1
        case 0x89, 0x8B, 0xC7, 0x81, 0x83, 0x85, 0xF7, 0xA5, 0xAB, 0xAD: return operand
        case 0xFF:
            let reg = (c[1] >> 3) & 7
            return reg == 2 || reg == 4 || reg == 6 ? 8 : operand   // call, jmp, push: 8 bytes
        default:
            // The ALU forms 00–3B: even opcodes act on bytes, odd ones on the operand size.
            if op < 0x40 && op & 7 < 4 { return op & 1 == 0 ? 1 : operand }
            return 0
        }
    }

    private static func twoByte(_ op: UInt8, operand16: Bool, rexW: Bool, repeatPrefix: UInt8) -> Int {
        switch op {
        case 0xB6, 0xBE: return 1                  // movzx, movsx from a byte
        case 0xB7, 0xBF: return 2                  // from a word
        case 0x10, 0x11:                           // movups/movupd, movss, movsd
            return repeatPrefix == 0xF3 ? 4 : repeatPrefix == 0xF2 ? 8 : 16
        case 0x28, 0x29, 0x2B, 0xE7: return 16     // movaps/movapd, movntps, movntdq
        case 0x6F, 0x7F: return operand16 || repeatPrefix == 0xF3 ? 16 : 8   // movdqa/movdqu; movq (MMX)
        case 0x7E: return repeatPrefix == 0xF3 ? 8 : (rexW ? 8 : 4)          // movq xmm, m64; movd/movq to r/m
        case 0xD6, 0x12, 0x13, 0x16, 0x17: return 8                          // movq m64, xmm; movlps/movhps
        case 0xC3: return rexW ? 8 : 4                                        // movnti
        default: return 0
        }
    }

    /// VEX-encoded moves: vmovups/vmovss/vmovsd (10, 11), vmovdqa/vmovdqu (6F, 7F).
    private static func vex(_ c: UnsafePointer<UInt8>) -> Int {
        let long: Bool, prefix: UInt8, op: UInt8
        if c[0] == 0xC5 {
            long = c[1] & 4 != 0
            prefix = c[1] & 3
            op = c[2]
        } else {
            guard c[1] & 0x1F == 1 else { return 0 }   // only the 0F map
            long = c[2] & 4 != 0
            prefix = c[2] & 3
            op = c[3]
        }
        switch op {
        case 0x10, 0x11: return prefix == 2 ? 4 : prefix == 3 ? 8 : (long ? 32 : 16)
        case 0x6F, 0x7F, 0x28, 0x29: return long ? 32 : 16
        default: return 0
        }
    }
}
