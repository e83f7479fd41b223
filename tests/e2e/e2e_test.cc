// The end-to-end suite: the real weftctl brings a whole 2-node mesh up from manifests
// (testdata/mesh.yaml), a real Prometheus server in node0's namespace scrapes every ztunnel and
// weftd (the endpoints state.json names, every 500 ms), and each scenario asserts through
// Prometheus's HTTP query API, packet captures on the inter-node link and calls made with
// `weftctl exec` from the pods. Every test runs in both capture modes (iptables, ebpf).
//
// Two meshes per mode keep the suite fast and the scenarios independent:
//   PolicyLifecycle: enrol (1), same/cross node (7), passthrough (6), PeerAuthentication (3),
//                    AuthorizationPolicy (4), NetworkPolicy (5), unenrol (2)
//   DaemonRestarts:  ztunnel killed (8), weftd killed (9), agent killed (10)
#include <signal.h>

#include "tests/e2e/e2e_fixture.h"

namespace weft::e2e {
namespace {

constexpr char kServer[] = "e2e/server", kClient[] = "e2e/client", kNear[] = "e2e/near",
               kOther[] = "e2e-b/other", kPlain[] = "outside/plain";

INSTANTIATE_TEST_SUITE_P(Capture, E2eTest, ::testing::Values("iptables", "ebpf"),
                         [](const auto& info) { return std::string(info.param); });

TEST_P(E2eTest, PolicyLifecycle) {
  const std::string server_ip = Pod(kServer).ip, plain_ip = Pod(kPlain).ip;
  {
    // Before enrolment nothing is captured and no mTLS connection exists.
    SCOPED_TRACE("baseline: plain text before enrolment");
    ASSERT_TRUE(Reaches(kClient, "server.e2e", "80"));
    EXPECT_EQ(Sum("sum(istio_tcp_connections_opened_total{connection_security_policy="
                  "\"mutual_tls\"})"),
              0);
    if (Ebpf()) {
      EXPECT_EQ(EnrolledSkLookupLinks(), 0);
    }
  }
  {
    // 1. Enrolling namespaces live (kubectl-style label) turns their traffic into mTLS: the
    // inter-node link carries TLS on HBONE's port and never the payload, and Prometheus shows
    // the connection with both workloads, both SPIFFE identities and mutual_tls.
    SCOPED_TRACE("1: enrol live -> mTLS on the wire, istio_tcp_* with identities");
    ASSERT_TRUE(Label("e2e", "weft.dev/mesh=enabled").ok());
    ASSERT_TRUE(Label("e2e-b", "weft.dev/mesh=enabled").ok());
    if (Ebpf()) {  // server, client, near, other
      EXPECT_EQ(EnrolledSkLookupLinks(), 4);
    }
    auto cap = CaptureFabric("enrolled.pcap");
    ASSERT_TRUE(cap.ok()) << cap.status();
    const std::string token = Token();
    ASSERT_TRUE(Reaches(kClient, "server.e2e.svc.cluster.local", "80", token));
    ASSERT_TRUE(cap->Stop().ok());
    auto leaked = testbed::PcapContains(cap->pcap_path(), token);
    ASSERT_TRUE(leaked.ok()) << leaked.status();
    EXPECT_FALSE(*leaked) << "the payload crossed the node boundary in clear text";
    auto stats = testbed::PcapSummary(cap->pcap_path(), {15008});
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_GT(stats->tls_handshake_records, 0) << "no TLS handshake on the link";
    EXPECT_GT(stats->tls_app_data_records, 0);

    for (const char* reporter : {"source", "destination"}) {
      SCOPED_TRACE(reporter);
      auto series = prom_->WaitFor(
          absl::StrCat("istio_tcp_connections_opened_total{reporter=\"", reporter,
                       "\",source_workload=\"", Pod(kClient).workload, "\"}"),
          [](const std::vector<PromSample>& v) { return !v.empty() && v[0].value >= 1; },
          seconds(10));
      ASSERT_TRUE(series.ok()) << series.status();
      ASSERT_EQ(series->size(), 1u);
      const auto& l = (*series)[0].labels;
      EXPECT_EQ(l.at("source_workload_namespace"), "e2e");
      EXPECT_EQ(l.at("destination_workload"), Pod(kServer).workload);
      EXPECT_EQ(l.at("destination_workload_namespace"), "e2e");
      EXPECT_EQ(l.at("source_principal"), "spiffe://cluster.local/ns/e2e/sa/client");
      EXPECT_EQ(l.at("destination_principal"), "spiffe://cluster.local/ns/e2e/sa/server");
      EXPECT_EQ(l.at("connection_security_policy"), "mutual_tls");
    }
  }
  {
    // 7. A same-node pair takes the fast path (reported as same_node), a cross-node pair mTLS;
    // both work.
    SCOPED_TRACE("7: same-node fast path and cross-node mTLS");
    ASSERT_TRUE(Reaches(kNear, "server.e2e", "80"));
    ASSERT_TRUE(Reaches(kClient, "server.e2e", "80"));
    ExpectPromValue(
        absl::StrCat("sum(istio_tcp_connections_opened_total{source_workload=\"",
                     Pod(kNear).workload, "\",connection_security_policy=\"same_node\"})"),
        [](double v) { return v >= 1; });
    EXPECT_EQ(
        Sum(absl::StrCat("sum(istio_tcp_connections_opened_total{source_workload=\"",
                         Pod(kNear).workload, "\",connection_security_policy=\"mutual_tls\"})")),
        0);
    ExpectPromValue(
        absl::StrCat("sum(istio_tcp_connections_opened_total{source_workload=\"",
                     Pod(kClient).workload, "\",connection_security_policy=\"mutual_tls\"})"),
        [](double v) { return v >= 2; });
  }
  {
    // 6. A meshed pod reaches a destination outside the mesh (passthrough), by Service name and
    // by pod IP; and an unenrolled pod reaches a meshed Service by name (cluster IP) and pod IP.
    SCOPED_TRACE("6: passthrough to and from outside the mesh");
    EXPECT_TRUE(Reaches(kClient, "plain.outside.svc.cluster.local", "80"));
    EXPECT_TRUE(Reaches(kClient, plain_ip, "8080"));
    EXPECT_TRUE(Reaches(kNear, "plain.outside", "80"));
    EXPECT_TRUE(Reaches(kPlain, "server.e2e.svc.cluster.local", "80"));
    EXPECT_TRUE(Reaches(kPlain, server_ip, "8080"));
  }
  {
    // 3. STRICT PeerAuthentication refuses a plaintext connection from outside the mesh (and
    // counts it as strict_mtls) while meshed callers keep working; PERMISSIVE lets it through.
    SCOPED_TRACE("3: STRICT refuses plaintext and counts it; PERMISSIVE accepts it");
    ASSERT_TRUE(Apply(Data("peerauth-strict.yaml")).ok());
    EXPECT_TRUE(Refused(kPlain, server_ip, "8080"));
    EXPECT_TRUE(Refused(kPlain, "server.e2e", "80"));
    EXPECT_TRUE(Reaches(kClient, "server.e2e", "80"));
    ExpectPromValue("sum(weft_policy_denials_total{reason=\"strict_mtls\"})",
                    [](double v) { return v >= 2; });
    ASSERT_TRUE(Apply(Data("peerauth-permissive.yaml")).ok());
    EXPECT_TRUE(Reaches(kPlain, server_ip, "8080"));
    ASSERT_TRUE(Delete(Data("peerauth-permissive.yaml")).ok());
  }
  {
    // 4. AuthorizationPolicy by principal (ALLOW), namespace, ipBlock and port (DENY), applied
    // and removed live; each denial is counted; an open connection that a new policy denies is
    // closed by the destination ztunnel.
    SCOPED_TRACE("4: AuthorizationPolicy ALLOW/DENY live, open connection closed");
    HeldConnection& held = Hold(kOther, "server.e2e", "80");
    const double denied_before = Denials();

    ASSERT_TRUE(Apply(Data("allow-client-principal.yaml")).ok());
    EXPECT_TRUE(Reaches(kClient, "server.e2e", "80")) << "ALLOW principal: the allowed one";
    EXPECT_TRUE(Refused(kNear, "server.e2e", "80")) << "ALLOW principal: same node, other SA";
    EXPECT_TRUE(Refused(kOther, "server.e2e", "80")) << "ALLOW principal: other namespace";
    EXPECT_TRUE(Eventually([&] { return held.Closed(); }, seconds(10)))
        << "the open connection from e2e-b/other survived the ALLOW policy:\n"
        << held.Log();
    ExpectPromValue("sum(weft_policy_reevaluation_closed_total)", [](double v) { return v >= 1; });
    ASSERT_TRUE(Delete(Data("allow-client-principal.yaml")).ok());
    EXPECT_TRUE(Reaches(kNear, "server.e2e", "80"));
    EXPECT_TRUE(Reaches(kOther, "server.e2e", "80"));

    ASSERT_TRUE(Apply(Data("deny-namespace.yaml")).ok());
    EXPECT_TRUE(Refused(kOther, "server.e2e", "80")) << "DENY namespace e2e-b";
    EXPECT_TRUE(Reaches(kClient, "server.e2e", "80"));
    ASSERT_TRUE(Delete(Data("deny-namespace.yaml")).ok());
    EXPECT_TRUE(Reaches(kOther, "server.e2e", "80"));

    std::string ipblock = absl::StrReplaceAll(ReadFile(Data("deny-ipblock.yaml.in")).value_or(""),
                                              {{"CLIENT_IP", Pod(kClient).ip}});
    std::string ipblock_file = tmp_.path() + "/deny-ipblock.yaml";
    std::ofstream(ipblock_file) << ipblock;
    ASSERT_TRUE(Apply(ipblock_file).ok());
    EXPECT_TRUE(Refused(kClient, "server.e2e", "80")) << "DENY ipBlock " << Pod(kClient).ip;
    EXPECT_TRUE(Reaches(kOther, "server.e2e", "80"));
    ASSERT_TRUE(Delete(ipblock_file).ok());
    EXPECT_TRUE(Reaches(kClient, "server.e2e", "80"));

    ASSERT_TRUE(Apply(Data("deny-port.yaml")).ok());
    EXPECT_TRUE(Refused(kClient, "server.e2e", "90")) << "DENY port 9090";
    EXPECT_TRUE(Reaches(kClient, "server.e2e", "80"));
    ASSERT_TRUE(Delete(Data("deny-port.yaml")).ok());
    EXPECT_TRUE(Reaches(kClient, "server.e2e", "90"));

    // near, other (ALLOW), other (namespace), client (ipBlock), client (port): 5 at least.
    ExpectPromValue("sum(weft_policy_denials_total)",
                    [&](double v) { return v >= denied_before + 5; });
  }
  {
    // 5. A Kubernetes NetworkPolicy that admits only port 8080 makes the destination refuse
    // meshed connections to 9090.
    SCOPED_TRACE("5: NetworkPolicy denies a port for meshed traffic");
    const double denied_before = Denials();
    ASSERT_TRUE(Apply(Data("netpol-only-main-port.yaml")).ok());
    EXPECT_TRUE(Refused(kClient, "server.e2e", "90"));
    EXPECT_TRUE(Refused(kNear, "server.e2e", "90"));
    EXPECT_TRUE(Reaches(kClient, "server.e2e", "80"));
    ExpectPromValue("sum(weft_policy_denials_total)",
                    [&](double v) { return v >= denied_before + 2; });
    ASSERT_TRUE(Delete(Data("netpol-only-main-port.yaml")).ok());
    EXPECT_TRUE(Reaches(kClient, "server.e2e", "90"));
  }
  {
    // 2. Unenrolling live turns traffic back into plain text (the token is on the wire) and
    // leaves nothing in the pods' namespaces: no Weft iptables chains, no sk_lookup links.
    SCOPED_TRACE("2: unenrol live -> plain text, nothing left in the pods");
    ASSERT_TRUE(Label("e2e", "weft.dev/mesh-").ok());
    ASSERT_TRUE(Label("e2e-b", "weft.dev/mesh-").ok());
    const double mtls =
        Sum("sum(istio_tcp_connections_opened_total{connection_security_policy=\"mutual_tls\"})");
    auto cap = CaptureFabric("unenrolled.pcap");
    ASSERT_TRUE(cap.ok()) << cap.status();
    const std::string token = Token();
    ASSERT_TRUE(Reaches(kClient, "server.e2e", "80", token));
    ASSERT_TRUE(cap->Stop().ok());
    auto seen = testbed::PcapContains(cap->pcap_path(), token);
    ASSERT_TRUE(seen.ok()) << seen.status();
    EXPECT_TRUE(*seen) << "after unenrolment the payload should cross the link in plain text";
    for (const char* pod : {kServer, kClient, kNear, kOther}) {
      EXPECT_FALSE(HasCaptureRules(pod)) << pod;
      EXPECT_TRUE(Eventually([&] { return Lines(ZtunnelListeners(pod)) == 0; }, seconds(5)))
          << "ztunnel still listens in " << pod << "'s namespace after unenrolment:\n"
          << ZtunnelListeners(pod);
    }
    if (Ebpf()) {
      EXPECT_EQ(EnrolledSkLookupLinks(), 0);
    }
    // Counted once Prometheus has scraped every ztunnel after the call returned.
    const double called_at =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    ExpectPromValue("min(timestamp(up{job=\"ztunnel\"}))",
                    [&](double scraped_at) { return scraped_at > called_at; });
    EXPECT_EQ(Sum("sum(istio_tcp_connections_opened_total{connection_security_policy="
                  "\"mutual_tls\"})"),
              mtls);
  }
  {
    // 2b. Enrolling the same pods again works as the first time: every new connection is
    // mTLS (nothing left from the first enrolment competes for the pods' traffic).
    SCOPED_TRACE("2b: re-enrol -> mTLS again for every connection");
    ASSERT_TRUE(Label("e2e", "weft.dev/mesh=enabled").ok());
    const std::string q = absl::StrCat(
        "sum(istio_tcp_connections_opened_total{reporter=\"source\",source_workload=\"",
        Pod(kClient).workload, "\",connection_security_policy=\"mutual_tls\"})");
    const double before = Sum(q);
    EXPECT_EQ(Lines(ZtunnelListeners(kClient)), 6) << ZtunnelListeners(kClient);
    // Stops at the first failure: a failed call costs its 5 s timeout.
    bool all = true;
    for (int i = 0; i < 6 && all; ++i) {
      auto r = Reaches(kClient, "server.e2e", "80");
      if (!r) ADD_FAILURE() << "call " << i << " of 6 after re-enrolment: " << r.message();
      all = static_cast<bool>(r);
    }
    if (all) ExpectPromValue(q, [&](double v) { return v >= before + 6; });
  }
}

TEST_P(E2eTest, DaemonRestarts) {
  ASSERT_TRUE(Label("e2e", "weft.dev/mesh=enabled").ok());
  ASSERT_TRUE(Reaches(kClient, "server.e2e", "80"));
  {
    // 8. Killing node0's ztunnel cuts its enrolled pods off (an open connection through it
    // breaks) without a byte leaving in plain text; the supervisor restarts it and traffic
    // resumes with no manual step, mTLS again.
    SCOPED_TRACE("8: ztunnel killed -> fail closed; restarted -> traffic resumes");
    HeldConnection& held = Hold(kClient, "server.e2e", "80");
    auto cap = CaptureFabric("ztunnel-killed.pcap");
    ASSERT_TRUE(cap.ok()) << cap.status();
    const int old_pid = s_.nodes[0].ztunnel_pid;
    ASSERT_GT(old_pid, 0);
    const std::string token = Token();
    {
      // The supervisor is held stopped, so ztunnel stays dead while the call is made.
      SupervisorPaused paused(s_.supervisor_pid);
      ASSERT_TRUE(paused.ok()) << "cannot stop the supervisor, pid " << s_.supervisor_pid;
      ASSERT_EQ(::kill(old_pid, SIGKILL), 0);
      ASSERT_TRUE(Eventually([&] { return up::ProcessStartTime(old_pid) == 0; }, seconds(5)));
      EXPECT_FALSE(Call(kClient, "server.e2e", "80", token).ok())
          << "a call went through with ztunnel dead";
      EXPECT_TRUE(Eventually([&] { return held.Closed(); }, seconds(10))) << held.Log();
      EXPECT_EQ(State().nodes[0].ztunnel_pid, old_pid);
    }
    EXPECT_TRUE(Eventually([&] { return State().nodes[0].ztunnel_pid != old_pid; }, seconds(15)))
        << "the supervisor did not restart ztunnel";
    EXPECT_TRUE(
        Eventually([&] { return Call(kClient, "server.e2e", "80", token).ok(); }, seconds(20)))
        << "traffic did not resume after ztunnel's restart";
    ASSERT_TRUE(cap->Stop().ok());
    auto leaked = testbed::PcapContains(cap->pcap_path(), token);
    ASSERT_TRUE(leaked.ok()) << leaked.status();
    EXPECT_FALSE(*leaked) << "an enrolled pod's bytes left the node in clear text";
    // The new ztunnel (same metrics endpoint, counters from zero) reports mTLS again.
    ExpectPromValue(
        absl::StrCat("sum(istio_tcp_connections_opened_total{instance=\"", s_.nodes[0].metrics,
                     "\",reporter=\"source\",connection_security_policy="
                     "\"mutual_tls\"})"),
        [](double v) { return v >= 1; });
  }
  {
    // 9. With weftd dead the data plane keeps its last config (traffic flows); a policy written
    // to the runtime manifests meanwhile takes effect once the supervisor has restarted weftd.
    SCOPED_TRACE("9: weftd killed -> traffic flows; a change made meanwhile applies after");
    const int old_pid = State().weftd.pid;
    ASSERT_GT(old_pid, 0);
    {
      // The supervisor is held stopped, so weftd stays dead while the policy is written and
      // traffic is checked.
      SupervisorPaused paused(s_.supervisor_pid);
      ASSERT_TRUE(paused.ok()) << "cannot stop the supervisor, pid " << s_.supervisor_pid;
      ASSERT_EQ(::kill(old_pid, SIGKILL), 0);
      ASSERT_TRUE(Eventually([&] { return up::ProcessStartTime(old_pid) == 0; }, seconds(5)));
      ASSERT_TRUE(Apply(Data("deny-client-principal.yaml"), /*wait=*/false).ok());
      EXPECT_TRUE(Reaches(kClient, "server.e2e", "80")) << "traffic stopped with weftd down";
      EXPECT_EQ(State().weftd.pid, old_pid);
    }
    EXPECT_TRUE(Eventually([&] { return State().weftd.pid != old_pid; }, seconds(15)))
        << "the supervisor did not restart weftd";
    EXPECT_TRUE(Eventually([&] { return !Call(kClient, "server.e2e", "80").ok(); }, seconds(20)))
        << "the policy written while weftd was down never took effect";
    EXPECT_TRUE(Reaches(kNear, "server.e2e", "80"));
    ExpectPromValue("up{job=\"weftd\"}", [](double v) { return v == 1; });
    ASSERT_TRUE(Delete(Data("deny-client-principal.yaml")).ok());
    EXPECT_TRUE(Reaches(kClient, "server.e2e", "80"));
  }
  {
    // 10. Killing and restarting node0's agent interrupts nothing: a connection open across the
    // restart keeps echoing and new connections succeed throughout.
    SCOPED_TRACE("10: agent killed and restarted -> no interruption");
    HeldConnection& held = Hold(kClient, "server.e2e", "80");
    const int old_pid = State().nodes[0].agent_pid;
    ASSERT_GT(old_pid, 0);
    ASSERT_EQ(::kill(old_pid, SIGKILL), 0);
    // New connections throughout: until the agent is back, then 8 more (a fault that hits a
    // share of the connections after the restart shows up with near certainty).
    int calls = 0, after_restart = 0;
    absl::Status failed;
    auto end = std::chrono::steady_clock::now() + seconds(20);
    while (std::chrono::steady_clock::now() < end && after_restart < 8) {
      const bool restarted = State().nodes[0].agent_pid != old_pid;
      absl::Status st = Call(kClient, "server.e2e", "80");
      ++calls;
      if (restarted) ++after_restart;
      if (!st.ok()) {
        failed = absl::Status(
            st.code(),
            absl::StrCat("call ", calls, " (", restarted ? "begun after" : "begun before",
                         " state.json showed the new agent): ", st.message()));
        break;
      }
    }
    EXPECT_TRUE(failed.ok()) << failed;
    EXPECT_NE(State().nodes[0].agent_pid, old_pid) << "the supervisor did not restart the agent";
    // The pod's captured traffic lands on ztunnel's in-pod listeners: one per address, or the
    // kernel spreads new connections over sockets nobody accepts on.
    EXPECT_EQ(Lines(ZtunnelListeners(kClient)), 6)
        << "ztunnel's listeners in e2e/client's namespace after the agent's restart:\n"
        << ZtunnelListeners(kClient);
    // A new pod connection after the restart still goes through the mesh.
    const double mtls = Sum(absl::StrCat(
        "sum(istio_tcp_connections_opened_total{source_workload=\"", Pod(kClient).workload,
        "\",reporter=\"source\",connection_security_policy=\"mutual_tls\"})"));
    const int acks = held.Acks();
    EXPECT_TRUE(Eventually([&] { return Call(kClient, "server.e2e", "80").ok(); }, seconds(15)));
    ExpectPromValue(absl::StrCat("sum(istio_tcp_connections_opened_total{source_workload=\"",
                                 Pod(kClient).workload,
                                 "\",reporter=\"source\",connection_security_policy="
                                 "\"mutual_tls\"})"),
                    [&](double v) { return v > mtls; });
    EXPECT_TRUE(Eventually([&] { return held.Acks() >= acks + 3; }, seconds(5))) << held.Log();
    EXPECT_FALSE(held.Closed()) << held.Log();
  }
}

}  // namespace
}  // namespace weft::e2e
