//! One Cairn node: routes inputs to its components and owns its timers.
