// AccessSize: the bytes a faulting x86-64 instruction accesses, decoded from its
// encoding (the page fault does not say).  Encodings as GNU as emits them.

@testable import SlabguardCore
import Testing

@Suite("Access size from the faulting instruction", .timeLimit(.minutes(5)))
struct AccessSizeTests {
    static func size(_ bytes: [UInt8]) -> Int {
        let padded = bytes + [UInt8](repeating: 0x90, count: 16)
        return padded.withUnsafeBufferPointer { AccessSize.ofInstruction(at: UInt(bitPattern: $0.baseAddress)) }
    }

    @Test(arguments: [
        ([0x8b, 0x07], 4),                    // mov (%rdi),%eax
        ([0x48, 0x8b, 0x07], 8),              // mov (%rdi),%rax
        ([0x66, 0x89, 0x07], 2),              // mov %ax,(%rdi)
        ([0x88, 0x07], 1),                    // mov %al,(%rdi)
        ([0xc6, 0x47, 0x08, 0x78], 1),        // movb $0x78,0x8(%rdi)
        ([0x48, 0x03, 0x14, 0xc7], 8),        // add (%rdi,%rax,8),%rdx
        ([0x0f, 0xb6, 0x07], 1),              // movzbl (%rdi),%eax
        ([0x0f, 0xb7, 0x07], 2),              // movzwl (%rdi),%eax
        ([0xf3, 0x0f, 0x6f, 0x07], 16),       // movdqu (%rdi),%xmm0
        ([0x0f, 0x11, 0x07], 16),             // movups %xmm0,(%rdi)
        ([0xf2, 0x0f, 0x10, 0x07], 8),        // movsd (%rdi),%xmm0
        ([0xc5, 0xfe, 0x6f, 0x07], 32),       // vmovdqu (%rdi),%ymm0
        ([0xc5, 0xfa, 0x6f, 0x07], 16),       // vmovdqu (%rdi),%xmm0
        ([0xff, 0x17], 8),                    // call *(%rdi)
        ([0xf3, 0xa4], 1),                    // rep movsb
        ([0x0f, 0x0b], 0),                    // ud2: not an access this knows
    ])
    func decodes(bytes: [UInt8], expected: Int) {
        #expect(Self.size(bytes) == expected)
    }
}
