// Telemetry: turns the engine's job events into Prometheus series and JSON log lines.
//
// Endpoint protection: OnGauges maps the gate's fields (circuit, operator pause, allowed in
// flight, tokens, retry budget, jobs waiting by reason) onto their gauges; the gate's events
// (circuit transitions, operator pauses) also log one line each, rate-capped by the EventLog.
//
// Owned by the app; the engine calls it on its loop thread (OnSubmitted on the store's writer
// thread). Counters are kept handles (no label lookup per event); label values are configured
// endpoint names and fixed enums only. Log lines carry no bodies and no header values.
#ifndef REBOUND_SERVER_APP_TELEMETRY_H_
#define REBOUND_SERVER_APP_TELEMETRY_H_

#include <string>

#include "server/engine/observer.h"
#include "server/log/event_log.h"
#include "server/metrics/metrics.h"

namespace rebound::app {

class Telemetry final : public engine::EngineObserver {
 public:
  // Endpoint names come from `metrics` (index = the engine's endpoint index, also after a
  // reload added endpoints).
  Telemetry(metrics::Metrics& metrics, log::EventLog& log) : metrics_(metrics), log_(log) {}

  void OnSubmitted(const common::JobSpec& spec, common::JobId id, int endpoint,
                   bool deduplicated) override;
  void OnAttemptStarted(const engine::JobRef& job) override;
  void OnAttemptFinished(const engine::JobRef& job, const policy::Outcome& outcome,
                         const policy::Decision& decision, absl::Duration duration) override;
  void OnFinished(const engine::JobRef& job, common::JobState state, absl::Duration age,
                  const std::string& decision) override;
  void OnReplayed(const engine::JobRef& job) override;
  void OnEndpointPaused(int endpoint, absl::Time until) override;
  // rebound_circuit_state and rebound_circuit_transitions_total{to}; one circuit_changed line
  // (warn when the breaker opens, info otherwise).
  void OnCircuitChanged(int endpoint, engine::CircuitState from, engine::CircuitState to,
                        const std::string& why) override;
  // rebound_retries_delayed_total only (a log line per held retry would be a flood).
  void OnRetryDelayed(int endpoint) override;
  // rebound_endpoint_operator_paused; one operator_paused or operator_resumed line.
  void OnOperatorPause(int endpoint, bool paused, absl::Time until,
                       const std::string& reason) override;
  void OnGauges(int endpoint, const engine::EndpointGauges& gauges) override;
  void OnBudgetGauges(int budget, const engine::BudgetGauges& gauges) override;
  void OnDeadLetterDelta(int endpoint, int64_t delta) override;

 private:
  log::JobFields FieldsOf(const engine::JobRef& job) const;

  metrics::Metrics& metrics_;
  log::EventLog& log_;
};

// The metric outcome of an attempt: transport errors split into timeout and the rest.
metrics::Outcome OutcomeOf(const policy::Outcome& outcome, policy::Action action);
// Why a retry happens, for rebound_retries_total{reason}.
metrics::RetryReason RetryReasonOf(const policy::Outcome& outcome, policy::Action action);

}  // namespace rebound::app

#endif  // REBOUND_SERVER_APP_TELEMETRY_H_
