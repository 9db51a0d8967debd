-- Prosody 0.12 config template for the XMPP adapter tests (tests/xmppserver.py fills it in).
-- Loopback only, no TLS, no s2s, no HTTP; @DIR@ is a scratch dir, @C2S_PORT@ a free port.
pidfile = "@DIR@/prosody.pid"
data_path = "@DIR@/data"
certificates = "@DIR@/certs"
log = { { levels = { min = "info" }, to = "file", filename = "@DIR@/prosody.log" } }
admins = { }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "posix" }
modules_disabled = { "s2s"; "tls"; "http"; "c2s_limits"; "limits" }
interfaces = { "127.0.0.1" }
c2s_ports = { @C2S_PORT@ }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
allow_registration = false
VirtualHost "localhost"
Component "conference.localhost" "muc"
    restrict_room_creation = false
    muc_room_default_public = true
    muc_room_default_public_jids = true   -- non-anonymous rooms: occupants (the bot) see real JIDs
    muc_room_locking = false              -- else a new room is locked (item-not-found) until configured
    muc_room_default_history_length = 20
