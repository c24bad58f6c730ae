print("slabguard: CLI not built yet")
