# jq helpers for check_deploy.sh (loaded with `jq -L tests/deploy 'include "promql"; ...'`).
#
# They walk the Grafana dashboard and the alert rules (read as JSON through yq) and read metric
# names out of PromQL. Parsing PromQL is promtool's job; here we only find the names, which is
# simple once strings, label matchers, ranges and grouping label lists are blanked out.

# ---- Grafana dashboard -------------------------------------------------------------------------

# Every panel, the panels kept inside rows included (a collapsed row holds its own panels).
def all_panels: .panels[]? | ., (.panels[]?);

def panel_label: "panel \(.id // "?") \"\(.title // "")\"";

# A query variable's query: a plain string (older Grafana) or {query: ..., refId: ...}.
def variable_query: (if (.query | type) == "object" then .query.query else .query end) // "";

# {where, id, expr} for every PromQL expression of the dashboard: each panel target's expr, and
# the expression inside each query variable (label_values(EXPR, label) or query_result(EXPR)).
# `id` is usable in a metric name.
def dashboard_exprs:
  ( all_panels | select(.type != "row") | . as $p
    | .targets[]?
    | {where: "\($p | panel_label) target \(.refId // "?")",
       id: "panel_\($p.id // "x")_\(.refId // "x" | gsub("[^a-zA-Z0-9_]"; "_"))",
       expr: (.expr // "")} ),
  ( .templating.list[]? | select(.type == "query") | .name as $name
    | variable_query
    | ( (capture("^\\s*label_values\\(\\s*(?<e>.*),\\s*[a-zA-Z_][a-zA-Z0-9_]*\\s*\\)\\s*$")
         // capture("^\\s*query_result\\((?<e>.*)\\)\\s*$")).e )
    | {where: "variable $\($name)", id: "variable_\($name | gsub("[^a-zA-Z0-9_]"; "_"))",
       expr: .} );

# Grafana's variables replaced by values that keep the expression valid PromQL: the selection
# variables by a regex matching anything, the interval variables by a duration.
def grafana_to_promql:
  gsub("\\$\\{__(rate_interval|interval|range)\\}|\\$__(rate_interval|interval|range)\\b"; "5m")
  | gsub("\\$\\{(cluster|namespace|job|instance|endpoint)(:[a-z]+)?\\}|\\$(cluster|namespace|job|instance|endpoint)\\b"; ".*");

# ---- PromQL ------------------------------------------------------------------------------------

# The metric names an expression selects (histogram suffixes included), each once.
def promql_names:
  gsub("\"(\\\\.|[^\"\\\\])*\"|'(\\\\.|[^'\\\\])*'|`[^`]*`"; "\"\"")            # strings
  | gsub("\\{[^}]*\\}"; " ")                                                     # label matchers
  | gsub("\\[[^\\]]*\\]"; " ")                                                   # ranges, subqueries
  | gsub("\\b(by|without|on|ignoring|group_left|group_right)\\s*\\([^)]*\\)"; " ")  # label lists
  | [scan("\\b[a-zA-Z_:][a-zA-Z0-9_:]*+(?!\\s*\\()")]                            # not functions
  | map(select(test("^(and|or|unless|bool|offset|by|without|on|ignoring|group_left|group_right|inf|nan)$"; "i") | not))
  | unique | .[];

# A histogram's series name -> its family name.
def family: sub("_(bucket|sum|count)$"; "");

# ---- What the checks require -------------------------------------------------------------------

# Families without an endpoint label; every other rebound_* family has one, and a dashboard
# selector of it must follow the $endpoint variable. A budget's series are labelled by the
# budget (several endpoints may share it).
def endpointless_families:
  ["rebound_jobs_rejected_total", "rebound_store_commit_duration_seconds",
   "rebound_store_batch_size", "rebound_store_jobs", "rebound_store_bytes",
   "rebound_store_free_bytes", "rebound_store_purged_total", "rebound_build_info",
   "rebound_watchers", "rebound_budget_in_flight", "rebound_budget_quota_used",
   "rebound_budget_quota_limit", "rebound_budget_tokens", "rebound_budget_scopes"];

# The variables that scope every selector of the dashboard to one Prometheus target set (no
# hard-coded job="rebound": the scrape job's name is the operator's), each a multi-value query
# variable with All matching anything (a series without a cluster label included).
def scope_variables: ["cluster", "namespace", "job", "instance"];

# Labels with a fixed set of values, most of them zero at any time: a panel split by one of them
# draws only the series above zero (`> 0`) or the top few (`topk`), or its legend lists every
# value, nearly all 0.
def enumerated_labels:
  ["outcome", "code_class", "reason", "state", "result", "to", "grpc_code", "grpc_method",
   "grpc_service", "grpc_type"];

def required_alerts:
  ["ReboundHighRetryRatio", "ReboundCircuitOpen", "ReboundCircuitFlapping",
   "ReboundEndpointPausedByOperatorTooLong", "ReboundDeadLettersGrowing",
   "ReboundQueueGrowingWithoutCompletions", "ReboundStoreCommitLatencyHigh",
   "ReboundNoSuccessfulAttempts", "ReboundDown"];

# One line per problem of the dashboard's structure; none when it is fine.
def dashboard_problems:
  . as $root |
  def ds_ok: (.datasource | type) == "object" and .datasource.uid == "${datasource}";
  def dups: group_by(.) | map(select(length > 1) | .[0]) | .[];
  ( if (.schemaVersion // 0) < 37 then "schemaVersion \(.schemaVersion) is older than 37" else empty end ),
  ( if (.uid // "") == "" or (.title // "") == "" then "the dashboard needs a uid and a title" else empty end ),
  ( [.templating.list[]? | select(.name == "datasource")] as $v
    | if ($v | length) != 1 then "no template variable named datasource"
      elif $v[0].type != "datasource" or $v[0].query != "prometheus"
      then "variable datasource: must be of type datasource with query prometheus"
      else empty end ),
  ( [.templating.list[]? | select(.name == "endpoint")] as $v
    | if ($v | length) != 1 then "no template variable named endpoint"
      else $v[0]
        | ( if .type != "query" then "variable endpoint: must be of type query" else empty end ),
          ( if (variable_query | gsub("\\s"; "") | test("^label_values\\(rebound_attempts_total(\\{[^}]*\\})?,endpoint\\)$") | not)
            then "variable endpoint: must query label_values(rebound_attempts_total{...}, endpoint), not '\(variable_query)'"
            else empty end ),
          ( if .multi != true or .includeAll != true then "variable endpoint: must be multi-value with All" else empty end ),
          ( if ds_ok | not then "variable endpoint: datasource must be {uid: \"${datasource}\"}" else empty end )
      end ),
  ( scope_variables[] as $name
    | [$root.templating.list[]? | select(.name == $name)] as $v
    | if ($v | length) != 1 then "no template variable named \($name)"
      else $v[0]
        | ( if .type != "query" or (variable_query | test("^\\s*label_values\\(.*,\\s*" + $name + "\\s*\\)\\s*$") | not)
            then "variable \($name): must be a query label_values(..., \($name))" else empty end ),
          ( if .multi != true or .includeAll != true or .allValue != ".*"
            then "variable \($name): must be multi-value with All matching .*" else empty end ),
          ( if ds_ok | not then "variable \($name): datasource must be {uid: \"${datasource}\"}" else empty end )
      end ),
  # The first row answers "which endpoint is failing, and why": success ratio, failure
  # classifications, dead letters, what waiting jobs wait for (by wait reason), circuit state;
  # each of its panels links to the runbooks.
  ( [.panels[]? | select(.type == "row") | .gridPos.y] | sort | .[1] // 1000000 ) as $second_row
  | [.panels[]? | select(.type != "row" and .gridPos.y < $second_row)] as $top
  | ( [$top[] | .targets[]?.expr // ""] | join("\n") ) as $top_exprs
  | ( ( ["rebound_attempts_total{[^}]*outcome", "rebound_dead_letter_jobs", "rebound_jobs_waiting",
         "rebound_circuit_state"][]
        | select(. as $re | $top_exprs | test($re) | not)
        | "the top row shows no \(.) (it must answer which endpoint fails and why at a glance)" ),
      ( $top[] | select([.links[]?.url // "" | select(test("\\$\\{runbooks\\}#"))] | length == 0)
        | "\(panel_label): a panel of the top row has no link to the runbooks (${runbooks}#...)" ) ),
  ( [all_panels | .id] | dups | "panel id \(.) is used twice" ),
  ( all_panels | select(.type != "row") | panel_label as $p
    | ( if ds_ok | not then "\($p): datasource must be {uid: \"${datasource}\"}" else empty end ),
      ( if (.targets // []) | length == 0 then "\($p): no targets" else empty end ),
      ( if .gridPos == null then "\($p): no gridPos" else empty end ),
      ( [.targets[]?.refId] | dups | "\($p): refId \(.) is used twice" ),
      ( .targets[]? | "\($p) target \(.refId // "?")" as $t
        | ( if ds_ok | not then "\($t): datasource must be {uid: \"${datasource}\"}" else empty end ),
          ( if (.expr // "") == "" then "\($t): no expr"
            else .expr as $e
              | $e | promql_names | select(startswith("rebound_"))
              | select(family as $f | any(endpointless_families[]; . == $f) | not) as $n
              | [$e | scan("(?<![a-zA-Z0-9_:])" + $n + "(?![a-zA-Z0-9_:])\\s*(\\{[^}]*\\})?") | .[0]]
              | map(select(. == null or (test("endpoint\\s*=~\\s*\"\\$\\{?endpoint\\}?\"") | not)))
              | if length > 0 then "\($t): a selector of \($n) is not filtered by endpoint=~\"$endpoint\"" else empty end
            end ),
          ( (.expr // "") as $e
            | ( $e | promql_names ) as $n
            | [$e | scan("(?<![a-zA-Z0-9_:])" + $n + "(?![a-zA-Z0-9_:])\\s*(\\{[^}]*\\})?") | .[0]] as $sels
            | ( scope_variables[] as $v
                | select(any($sels[]; . == null or (test("\\b" + $v + "\\s*=~\\s*\"\\$\\{?" + $v + "\\}?\"") | not)))
                | "\($t): a selector of \($n) is not scoped by \($v)=~\"$\($v)\"" ),
              ( select(any($sels[]; . != null and test("\\bjob\\s*=~?\\s*\"[^$]")))
                | "\($t): \($n) has a hard-coded job label (use job=~\"$job\")" ) ),
          ( (.expr // "") as $e
            | select($p | test("^panel [0-9]+ ")) | select($e | test("topk\\(") | not)
            | select($e | test(">\\s*0\\s*\\)?\\s*$") | not)
            | [$e | scan("\\b(?:by)\\s*\\(([^)]*)\\)") | .[0] | split(",")[] | gsub("\\s"; "")]
            | map(select(. as $l | enumerated_labels | index([$l]))) | unique
            | select(length > 0)
            | "\($t): split by \(join(", ")) without `> 0` or topk: its legend lists every value, most of them 0" ) ) );

# ---- Alert rules (alerts.yaml as JSON) ---------------------------------------------------------

def alert_rules: .groups[]?.rules[]? | select(.alert != null);

# {where, expr} of every rule.
def rule_exprs: .groups[]?.rules[]? | {where: "rule \(.alert // .record)", expr: (.expr // "" | tostring)};

# One line per problem of the alerts' metadata; none when they are fine.
def alerts_problems:
  [alert_rules | .alert] as $names
  | ( (required_alerts - $names)[] | "missing alert \(.)" ),
    ( $names | group_by(.) | map(select(length > 1) | .[0]) | .[] | "alert \(.) is defined twice" ),
    ( alert_rules | "alert \(.alert)" as $a
      | ( if (.for // "0s") | test("^0+[smhdwy]?$") then "\($a): needs a for: duration" else empty end ),
        ( (.labels.severity // "") as $s
          | if ["critical", "warning", "info"] | index([$s]) == null
            then "\($a): labels.severity must be critical, warning or info" else empty end ),
        ( (.annotations // {}) as $ann
          | ( ["summary", "description", "runbook"][]
              | select(($ann[.] // "") | tostring | length == 0) | "\($a): no \(.) annotation" ),
            ( ["Means:", "Check:", "Do:"][] as $part
              | select(($ann.runbook // "") | tostring | contains($part) | not)
              | "\($a): the runbook has no '\($part)' part (what it means, what to check, what to do)" ) ) );

# ---- Metric names ------------------------------------------------------------------------------

# Input: an array of {where, expr}; $metrics: deploy/metrics.txt; $dashboard_names: the names
# the dashboard selects. One line per problem. prometheus-cpp's own exposer_* families (scrapes
# of /metrics) are listed in metrics.txt because the server exports them, but the dashboard need
# not show them.
def metric_name_problems($metrics; $dashboard_names):
  ($metrics | split("\n") | map(sub("^\\s+|\\s+$"; "")) | map(select(length > 0 and (startswith("#") | not)))) as $known
  | ( $known[] | select(test("^[a-zA-Z_:][a-zA-Z0-9_:]*$") | not) | "deploy/metrics.txt: '\(.)' is not a metric name" ),
    ( $known | group_by(.) | map(select(length > 1) | .[0]) | .[] | "deploy/metrics.txt: \(.) is listed twice" ),
    ( .[] | .where as $w | .expr | promql_names
      | select(. != "up" and (. as $n | $known | index([$n]) | not) and (family as $f | $known | index([$f]) | not))
      | "\($w): \(.) is not an exported metric (deploy/metrics.txt)" ),
    ( $known[] | select(startswith("exposer_") | not)
      | select(. as $k | $dashboard_names | map(family) | index([$k]) | not)
      | "deploy/metrics.txt: \(.) is exported but no dashboard panel shows it" );
