{{/* Labels of every object: the service name, the common labels, Helm's own. */}}
{{- define "extsvc.labels" -}}
{{- $root := index . 0 -}}
{{- $labels := dict -}}
{{- with index . 1 }}{{ $_ := set $labels "app.kubernetes.io/name" . }}{{ end -}}
{{- range $k, $v := $root.Values.commonLabels }}{{ $_ := set $labels $k (toString $v) }}{{ end -}}
{{- $_ := set $labels "app.kubernetes.io/instance" $root.Release.Name -}}
{{- $_ := set $labels "app.kubernetes.io/managed-by" $root.Release.Service -}}
{{- $_ := set $labels "helm.sh/chart" (printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_") -}}
{{- toYaml $labels -}}
{{- end -}}

{{/* repository:tag of a service image. */}}
{{- define "extsvc.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{/* Pod securityContext shared by every Deployment (arg: uid). */}}
{{- define "extsvc.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ . }}
  runAsGroup: {{ . }}
  fsGroup: {{ . }}
  seccompProfile: { type: RuntimeDefault }
{{- end -}}

{{/* Container securityContext shared by every container. */}}
{{- define "extsvc.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  capabilities: { drop: [ALL] }
{{- end -}}

{{/* Probes on the admin port. */}}
{{- define "extsvc.probes" -}}
readinessProbe:
  httpGet: { path: /readyz, port: admin }
  periodSeconds: 5
  failureThreshold: 2
livenessProbe:
  httpGet: { path: /healthz, port: admin }
  periodSeconds: 10
  failureThreshold: 3
startupProbe:
  httpGet: { path: /healthz, port: admin }
  periodSeconds: 2
  failureThreshold: 30
{{- end -}}

{{/* Spread replicas over nodes (arg: service name). */}}
{{- define "extsvc.spread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: { app.kubernetes.io/name: {{ . }} }
{{- end -}}

{{/* PodDisruptionBudget (args: root, name, namespace, pdb values). */}}
{{- define "extsvc.pdb" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}{{- $ns := index . 2 -}}{{- $pdb := index . 3 -}}
{{- if $pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $ns }}
  labels: {{- include "extsvc.labels" (list $root $name) | nindent 4 }}
spec:
  minAvailable: {{ $pdb.minAvailable }}
  selector:
    matchLabels: { app.kubernetes.io/name: {{ $name }} }
{{- end }}
{{- end -}}

{{/* The REDIS_URL ratelimit uses: the bundled Redis, an external one, or none (memory). */}}
{{- define "extsvc.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://redis.%s.svc:6379" .Release.Namespace -}}
{{- else -}}
{{- .Values.redis.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* Namespace of the Emissary resources. */}}
{{- define "extsvc.emissaryNamespace" -}}
{{- default .Release.Namespace .Values.emissary.namespace -}}
{{- end -}}


{{/* HTTP mode: what Emissary delivers upstream from authz's answer: its fixed list plus
     emissary.authService.allowedAuthorizationHeaders (authz's HTTP_UPSTREAM_HEADERS). */}}
{{- define "extsvc.upstreamHeaders" -}}
{{- $fixed := list "authorization" "location" "proxy-authenticate" "set-cookie" "www-authenticate" -}}
{{- concat $fixed .Values.emissary.authService.allowedAuthorizationHeaders | uniq | join "," -}}
{{- end -}}
