// `weft-soak load`: one stream of the soak's steady load, run inside a client pod through
// `weftctl exec` (its netns and cgroup, so the capture sees its sockets in both modes). It drives
// weft-loadgen's engine (bench/loadgen) in back-to-back segments of --segment (keep-alive
// users, open loop) and prints one line per segment, so the soak can place every failed request
// in time against the churn:
//   SEGMENT {"t0_ms":..,"t1_ms":..,"requests":..,"ok":..,"errors":..,"transport_errors":..,
//            "status_errors":..,"unfinished":..,"connections":..}
// (Unix ms; errors = transport + status errors + requests unfinished at the segment's end). It
// stops after --seconds.
#pragma once

namespace weft::soak {

// argv[0] is "load". Exit 0 when it ran to its end, 2 for bad flags.
int LoadMain(int argc, char** argv);

}  // namespace weft::soak
