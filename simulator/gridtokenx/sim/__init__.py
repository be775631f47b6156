"""The simulator: grid physics and the emulated meters that stand in for hardware."""
