{{/*
Names. They are fixed, not derived from the release name, because weftd and the RBAC in
clusterrole.yaml refer to them: weftd's certificate names weftd.<namespace>.svc, weftd accepts
node tokens of the ServiceAccount "ztunnel", and clusterrole.yaml binds the ServiceAccount
"weftd". One release per cluster.
*/}}
{{- define "weft.weftdName" -}}weftd{{- end }}
{{- define "weft.nodeName" -}}weft-node{{- end }}
{{- define "weft.ztunnelName" -}}weft-ztunnel{{- end }}
{{- define "weft.nodeServiceAccount" -}}ztunnel{{- end }}
{{- define "weft.rootCertConfigMap" -}}weft-ca-root-cert{{- end }}

{{/*
weftd's in-cluster address, as the node pods dial it, and the name its certificate carries.
*/}}
{{- define "weft.controlPlaneAddress" -}}
{{ include "weft.weftdName" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:{{ .Values.weftd.ports.grpc }}
{{- end }}
{{- define "weft.controlPlaneServerName" -}}
{{ include "weft.weftdName" . }}.{{ .Release.Namespace }}.svc
{{- end }}

{{/*
The agent -> ztunnel handoff socket, inside both node pods: the directory is a hostPath
(node.handoffHostPath) that weft-node (the agent, read-only) and weft-ztunnel (read-write) mount
at the same place, and the agent's --ztunnel-socket is ztunnel's --inpod-socket.
*/}}
{{- define "weft.handoffDir" -}}/run/weft{{- end }}
{{- define "weft.handoffSocket" -}}/run/weft/ztunnel.sock{{- end }}

{{/*
Refuse values weftd cannot honour, with a message saying what to do.
*/}}
{{- define "weft.checkValues" -}}
{{- if ne .Values.rootNamespace "weft-system" }}
{{- fail (printf "rootNamespace %q: weftd has no flag for the mesh-wide policy namespace yet and always uses weft-system; leave rootNamespace at weft-system" .Values.rootNamespace) }}
{{- end }}
{{- if not (has .Values.capture (list "auto" "ebpf" "iptables" "none")) }}
{{- fail (printf "capture %q: use auto, ebpf, iptables or none" .Values.capture) }}
{{- end }}
{{- end }}

{{/*
Labels on every object (together with its component's selector labels, which name the
component and the release and never change on upgrade).
*/}}
{{- define "weft.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: weft
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "weft.weftdSelectorLabels" -}}
app.kubernetes.io/name: weftd
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "weft.nodeSelectorLabels" -}}
app.kubernetes.io/name: weft-node
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "weft.ztunnelSelectorLabels" -}}
app.kubernetes.io/name: weft-ztunnel
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
"repository:tag" of a component; an empty tag is the chart's appVersion.
Call: include "weft.image" (dict "image" .Values.weftd.image "root" .)
*/}}
{{- define "weft.image" -}}
{{ .image.repository }}:{{ default .root.Chart.AppVersion .image.tag }}
{{- end }}
