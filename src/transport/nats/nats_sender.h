// The nats scheme: a relay route publishing to NATS JetStream
// (sender = "nats://[user:pass@|token@]host:port[,nats://...]").
//
// Route keys of the scheme (besides every route's):
//   subject      required; a template ({type}, {stream}, {category};
//                core/template.h) naming the subject of each event
//   credentials  a NATS .creds file (JWT + NKey seed); default none
//   mode         "binary" (default: ce-* headers, body = payload) or
//                "structured" (application/cloudevents+json body)
//   timeout      how long to wait for one PubAck (default 5s)
//   connect_timeout  how long a Send waits for the connection (default 5s)
//
// Pure checks here; the sender itself is nats_sender.cc (libnats).
#pragma once

#include <memory>
#include <string_view>

#include "herald/sender.h"

namespace herald::detail {

inline constexpr std::string_view kNatsKeys =
    "subject, credentials, mode, timeout, connect_timeout";

// "nats://host[:port]", optionally user:pass@ or token@, several servers
// separated by commas. InvalidArgument names what is wrong.
Status ValidateNatsUrl(std::string_view url);

// Checks route->options (the keys above; subject required, its template
// valid). Errors name file, line, route and key.
Status ValidateNatsOptions(RouteConfig* route);

// Makes the sender of a route that passed ValidateNatsOptions. Connecting
// happens in the background (and again after every lost connection), so a
// server that is down now is not an error here: Send reports it.
Result<std::unique_ptr<Sender>> MakeNatsSender(const RouteConfig& route);

// For tests only: choices MakeNatsSender makes by itself (MakeNatsSender is
// MakeNatsSenderForTest with the default knobs).
struct NatsTestKnobs {
  // Make every message with natsMsgHeader_Set, the fallback a sender takes
  // when this libnats' natsMsg_create fails its start-up check (default:
  // from the message's wire form when the check passes).
  bool force_header_set = false;
};
Result<std::unique_ptr<Sender>> MakeNatsSenderForTest(
    const RouteConfig& route, const NatsTestKnobs& knobs);

// Whether `sender` (made by MakeNatsSender*) makes its messages from their
// wire form with natsMsg_create (the fast path) rather than with
// natsMsgHeader_Set; false for a sender of another kind.
bool NatsSenderUsesWireForm(const Sender& sender);

}  // namespace herald::detail
