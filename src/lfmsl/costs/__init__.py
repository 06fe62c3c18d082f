"""What a run would cost on real devices: the communication ledger and the latency model (the device profiles
are in `lfmsl.profiles`, the FLOP counts in `lfmsl.models.flops`)."""
