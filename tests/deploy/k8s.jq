# Policy rules for rendered Kubernetes manifests, used by check_kubernetes.sh (`jq -L`):
#   include "k8s"; policy_problems
# The input is the JSON array of a render's objects (yq -s .). Each rule prints one line per
# problem, naming the object and the field; no output means the render passes.

def where: "\(.kind)/\(.metadata.name)";

# Objects that carry a pod template, with the template.
def workloads:
  .[] | select(.kind | IN("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"))
  | {where: where, pod: .spec.template.spec, labels: (.spec.template.metadata.labels // {}),
     object: .};

# $sub is contained in $labels (a selector matches a label set).
def selects($labels): . as $sel | ($sel | length) > 0
  and all($sel | to_entries[]; $labels[.key] == .value);

# Restricted Pod Security, probes and resources, for every container of every pod template.
def container_problems:
  workloads | . as $w | ($w.pod.securityContext // {}) as $psc
  | (
      (if $w.pod.automountServiceAccountToken != false
       then "\($w.where): automountServiceAccountToken is not false" else empty end),
      (if ($psc.seccompProfile.type // "") != "RuntimeDefault"
          and any($w.pod.containers[]; (.securityContext.seccompProfile.type // "") != "RuntimeDefault")
       then "\($w.where): seccompProfile RuntimeDefault is set neither on the pod nor on every container"
       else empty end),
      ( ($w.pod.containers // [] | map(. + {init: false})) + ($w.pod.initContainers // [] | map(. + {init: true}))
        | .[] | . as $c | ($c.securityContext // {}) as $csc
        | "\($w.where) container \($c.name)" as $at
        | (
            (if (($csc.runAsNonRoot // $psc.runAsNonRoot) != true)
             then "\($at): runAsNonRoot is not true" else empty end),
            (($csc.runAsUser // $psc.runAsUser) as $uid
             | if $uid == null then "\($at): no numeric runAsUser (the image's USER is not checked here)"
               elif $uid == 0 then "\($at): runs as root (runAsUser 0)" else empty end),
            (if $csc.allowPrivilegeEscalation != false
             then "\($at): allowPrivilegeEscalation is not false" else empty end),
            (if ($csc.capabilities.drop // [] | index("ALL")) == null
             then "\($at): capabilities do not drop ALL" else empty end),
            (if ($csc.capabilities.add // []) | length > 0
             then "\($at): adds capabilities \($csc.capabilities.add)" else empty end),
            (if $csc.privileged == true then "\($at): privileged" else empty end),
            (if $csc.readOnlyRootFilesystem != true
             then "\($at): readOnlyRootFilesystem is not true" else empty end),
            (if $c.init then empty else
               (if $c.livenessProbe == null then "\($at): no livenessProbe" else empty end),
               (if $c.readinessProbe == null then "\($at): no readinessProbe" else empty end)
             end),
            (["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"][]
             | . as $r | ($r | split(".")) as $p
             | if ($c.resources[$p[0]][$p[1]] // null) == null
               then "\($at): no resources.\($r)" else empty end),
            (if any($c.volumeMounts[]?; .mountPath == "/tmp") | not
             then "\($at): nothing mounted at /tmp (the root filesystem is read-only)" else empty end),
            (if $c.image == null or ($c.image | test(":latest$"))
             then "\($at): image '\($c.image)' has no fixed tag" else empty end)
          )
      )
    );

# Rebound's own container: named ports, gRPC probes on the grpc port, the grace period.
def rebound_problems:
  workloads | select(.where == "Deployment/rebound") | . as $w
  | ($w.pod.containers[] | select(.name == "rebound")) as $c
  | ($c.ports // [] | map({(.name): .containerPort}) | add // {}) as $ports
  | (
      (["grpc", "metrics"][] | select($ports[.] == null)
       | "\($w.where): container rebound has no port named \(.)"),
      (["livenessProbe", "readinessProbe", "startupProbe"][] as $p
       | if $c[$p] == null then (if $p == "startupProbe" then "\($w.where): no \($p)" else empty end)
         elif $c[$p].grpc.port == null then "\($w.where): \($p) is not a native gRPC probe"
         elif $c[$p].grpc.port != $ports.grpc then "\($w.where): \($p) probes port \($c[$p].grpc.port), not the grpc port \($ports.grpc)"
         else empty end),
      (if ($w.pod.terminationGracePeriodSeconds // 30) <= ($c.lifecycle.preStop.sleep.seconds
            // ($c.lifecycle.preStop.exec.command // [] | if .[0] | tostring | test("sleep$") then (.[1] | tonumber) else 0 end))
       then "\($w.where): terminationGracePeriodSeconds does not exceed the preStop delay" else empty end)
    );

# Every Service and NetworkPolicy selects Rebound's pods, with the named ports.
def selector_problems:
  ([workloads | .labels]) as $pods
  | (
      (if ($pods | length) == 0 then "no workload in the render" else empty end),
      (.[] | select(.kind == "Service") | where as $at
       | (if ([$pods[] as $l | .spec.selector // {} | selects($l)] | any) | not
        then "\($at): its selector \(.spec.selector) matches no pod template" else empty end),
       (["grpc", "metrics"] - [.spec.ports[]?.name] | .[] | "\($at): no port named \(.)")),
      (.[] | select(.kind == "NetworkPolicy") | where as $at
       | (if ([$pods[] as $l | .spec.podSelector.matchLabels // {} | selects($l)] | any) | not
          then "\($at): podSelector \(.spec.podSelector) does not select Rebound's pods (an empty one selects every pod)"
          else empty end),
       (if (.spec.policyTypes // [] | index("Egress")) == null
        then "\($at): no Egress policy type" else empty end),
       (.spec.egress[]?.to[]? | select(.podSelector.matchLabels["app.kubernetes.io/name"] != null)
        | "\($at): an egress peer's podSelector carries the app label: \(.podSelector)"))
    );

# Never a literal credential.
def secret_problems:
  (.[] | select(.kind == "Secret") | "\(where): a Secret in the manifests; reference one instead"),
  (workloads | .where as $at | .pod.containers[] | .env[]?
   | select(.value != null and (.name | test("TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL"; "i")))
   | "\($at): env \(.name) has a literal value; use valueFrom.secretKeyRef or envFrom.secretRef");

# overlays/sqlite: one replica, Recreate, the data volume on a ReadWriteOnce claim.
def sqlite_problems:
  (map(select(.kind == "PersistentVolumeClaim")) | map({(.metadata.name): .}) | add // {}) as $claims
  | workloads | select(.where == "Deployment/rebound") | .object as $d | .where as $at
  | (
      (if $d.spec.replicas != 1 then "\($at): replicas is \($d.spec.replicas), SQLite needs exactly 1" else empty end),
      (if $d.spec.strategy.type != "Recreate" then "\($at): strategy is not Recreate" else empty end),
      ($d.spec.template.spec.volumes // [] | map(select(.name == "data")) | first) as $v
      | if $v.persistentVolumeClaim.claimName == null then "\($at): volume data is not a PersistentVolumeClaim"
        elif $claims[$v.persistentVolumeClaim.claimName] == null then "\($at): claim \($v.persistentVolumeClaim.claimName) is not in the render"
        elif $claims[$v.persistentVolumeClaim.claimName].spec.accessModes != ["ReadWriteOnce"] then "\($at): claim \($v.persistentVolumeClaim.claimName) is not ReadWriteOnce only"
        else empty end
    );

# The recommended labels (kubernetes.io/docs: "Recommended Labels") on every object but a
# Namespace, and every selector on name + instance: two installs in one namespace differ in
# their instance label, and a selector on the name alone would take the other's pods.
def recommended_labels:
  ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
   "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"];
def selector_labels: ["app.kubernetes.io/name", "app.kubernetes.io/instance"];

def label_problems:
  (.[] | select(.kind != "Namespace") | where as $at | (.metadata.labels // {}) as $l
   | recommended_labels[] | select($l[.] == null) | "\($at): no label \(.)"),
  (workloads | .where as $at | .labels as $l
   | recommended_labels[] | select($l[.] == null) | "\($at): the pod template has no label \(.)"),
  ( ( (workloads | {at: .where, sel: (.object.spec.selector.matchLabels // {})}),
      (.[] | select(.kind == "Service") | {at: where, sel: (.spec.selector // {})}),
      (.[] | select(.kind == "NetworkPolicy") | {at: where, sel: (.spec.podSelector.matchLabels // {})}),
      (.[] | select(.kind == "ServiceMonitor") | {at: where, sel: (.spec.selector.matchLabels // {})}) )
    | .at as $at | .sel as $sel
    | selector_labels[] | select($sel[.] == null) | "\($at): its selector has no \(.)" );

# An image reference names its registry host (a first component with a dot or a port, or
# localhost) and a tag or digest: nothing is left to a runtime's search list.
def image_problems:
  workloads | .where as $at | (.pod.containers + (.pod.initContainers // []))[] | . as $c
  | ($c.image // "") as $i
  | if ($i | split("/") | length) < 2 or ($i | split("/")[0] | test("[.:]|^localhost$") | not)
    then "\($at) container \($c.name): image '\($i)' is not fully qualified (registry host first, e.g. registry.example.org/rebound/rebound-server:0.1.0)"
    elif ($i | test("@sha256:[0-9a-f]{64}$|:[A-Za-z0-9_][A-Za-z0-9_.-]*$") | not) or ($i | split("/")[-1] | test(":|@") | not)
    then "\($at) container \($c.name): image '\($i)' has no tag or digest"
    else empty end;

# A Namespace only where asked for ($allowed: the render is overlays/sqlite-in-namespace).
def namespace_problems($allowed):
  if $allowed then empty
  else .[] | select(.kind == "Namespace")
       | "\(where): a Namespace in this render; only overlays/sqlite-in-namespace creates one (apply the others with -n)"
  end;

def policy_problems: container_problems, rebound_problems, selector_problems, secret_problems,
  label_problems, image_problems;

# monitoring/ against the Service of an overlay ($app: that render's objects).
def monitoring_problems($app):
  ($app | map(select(.kind == "Service"))) as $services
  | (
      (.[] | select(.kind == "ServiceMonitor") | where as $at | . as $sm
       | ([$services[] | select(.metadata.namespace == ($sm.metadata.namespace // null))
           | select(.metadata.labels // {} | . as $l | $sm.spec.selector.matchLabels // {} | selects($l))]) as $hit
       | (if ($hit | length) == 0 then "\($at): selects no Service of the app (namespace or labels differ)" else empty end),
         ($sm.spec.endpoints[]? | .port as $p
          | if ([$hit[] | .spec.ports[]?.name] | index($p)) == null and ($hit | length) > 0
            then "\($at): port '\($p)' is not a port of the Service" else empty end),
         (if ($sm.spec.endpoints // []) | length == 0 then "\($at): no endpoints" else empty end),
         (if any($sm.spec.endpoints[]?.relabelings[]?; .targetLabel == "job" and .replacement == "rebound") | not
          then "\($at): does not set job=\"rebound\" (the alerts select it)" else empty end)),
      (if any(.[]; .kind == "ServiceMonitor") | not then "no ServiceMonitor" else empty end),
      label_problems,
      (if any(.[]; .kind == "PrometheusRule") | not then "no PrometheusRule" else empty end),
      (if any(.[]; .kind == "ConfigMap" and .metadata.labels.grafana_dashboard == "1"
                   and ((.data // {}) | length) > 0) | not
       then "no ConfigMap labelled grafana_dashboard=\"1\" with a dashboard" else empty end)
    );
