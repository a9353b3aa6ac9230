// What the policy tests answer with: an HTTP outcome with a status, a body and headers.
#ifndef REBOUND_TESTS_POLICY_OUTCOMES_H_
#define REBOUND_TESTS_POLICY_OUTCOMES_H_

#include <string>
#include <utility>
#include <vector>

#include "server/policy/policy.h"

namespace rebound::policy {

inline Outcome Http(int status, std::string body = "",
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
  Outcome o;
  o.http_status = status;
  o.body = std::move(body);
  o.headers = std::move(headers);
  return o;
}

}  // namespace rebound::policy

#endif  // REBOUND_TESTS_POLICY_OUTCOMES_H_
