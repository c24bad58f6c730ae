import Testing
@testable import SlabguardCore
import Slabguard

@Test func smoke() {
    let p = Slabguard.alloc(100)
    #expect(p != nil)
    Slabguard.free(p!, size: 100)
}
