using System.Globalization;
using System.Text;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace Queue.Hosting.Metrics;

/// <summary>
/// Renders OpenTelemetry metrics in the Prometheus text exposition format (the OpenTelemetry
/// Prometheus exporter does not restore here). Pull-based: <see cref="Scrape"/> asks the reader to
/// collect, which calls <see cref="Export"/> on the same thread.
/// </summary>
public sealed class PrometheusTextExporter : BaseExporter<Metric>
{
    private readonly Lock gate = new();
    private readonly StringBuilder text = new(16 * 1024);
    private MetricReader? reader;

    /// <summary>The reader to register with the meter provider; it keeps cumulative totals, as Prometheus expects.</summary>
    public MetricReader CreateReader()
    {
        reader = new BaseExportingMetricReader(this) { TemporalityPreference = MetricReaderTemporalityPreference.Cumulative };
        return reader;
    }

    /// <summary>Collects every instrument now and returns the exposition text.</summary>
    public string Scrape()
    {
        lock (gate)
        {
            text.Clear();
            reader?.Collect(5000);
            return text.ToString();
        }
    }

    public override ExportResult Export(in Batch<Metric> batch)
    {
        foreach (var metric in batch)
        {
            Write(metric);
        }
        return ExportResult.Success;
    }

    private void Write(Metric metric)
    {
        var name = MetricName(metric);
        var type = metric.MetricType switch
        {
            MetricType.LongSum or MetricType.DoubleSum => "counter",
            MetricType.Histogram => "histogram",
            _ => "gauge",
        };
        text.Append("# HELP ").Append(name).Append(' ').Append(EscapeHelp(metric.Description ?? "")).Append('\n');
        text.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        foreach (ref readonly var point in metric.GetMetricPoints())
        {
            var labels = Labels(point.Tags);
            switch (metric.MetricType)
            {
                case MetricType.LongSum:
                case MetricType.LongSumNonMonotonic:
                    Sample(name, labels, null, point.GetSumLong());
                    break;
                case MetricType.DoubleSum:
                case MetricType.DoubleSumNonMonotonic:
                    Sample(name, labels, null, point.GetSumDouble());
                    break;
                case MetricType.LongGauge:
                    Sample(name, labels, null, point.GetGaugeLastValueLong());
                    break;
                case MetricType.DoubleGauge:
                    Sample(name, labels, null, point.GetGaugeLastValueDouble());
                    break;
                case MetricType.Histogram:
                    long cumulative = 0;
                    foreach (var bucket in point.GetHistogramBuckets())
                    {
                        cumulative += bucket.BucketCount;
                        var le = double.IsPositiveInfinity(bucket.ExplicitBound) ? "+Inf" : Format(bucket.ExplicitBound);
                        Sample(name + "_bucket", labels, le, cumulative);
                    }
                    Sample(name + "_sum", labels, null, point.GetHistogramSum());
                    Sample(name + "_count", labels, null, point.GetHistogramCount());
                    break;
            }
        }
    }

    private void Sample(string name, string labels, string? le, double value)
    {
        text.Append(name);
        if (labels.Length > 0 || le is not null)
        {
            text.Append('{').Append(labels);
            if (le is not null)
            {
                text.Append(labels.Length > 0 ? "," : "").Append("le=\"").Append(le).Append('"');
            }
            text.Append('}');
        }
        text.Append(' ').Append(Format(value)).Append('\n');
    }

    /// <summary>Prometheus naming: dots become underscores, the unit becomes a suffix, counters end in _total.</summary>
    public static string MetricName(Metric metric)
    {
        var name = Sanitize(metric.Name, allowColon: true);
        var unit = metric.Unit switch
        {
            "s" => "seconds",
            "ms" => "milliseconds",
            "By" => "bytes",
            _ => null,
        };
        if (unit is not null && !name.EndsWith("_" + unit, StringComparison.Ordinal))
        {
            name += "_" + unit;
        }
        if (metric.MetricType is MetricType.LongSum or MetricType.DoubleSum && !name.EndsWith("_total", StringComparison.Ordinal))
        {
            name += "_total";
        }
        return name;
    }

    private static string Labels(ReadOnlyTagCollection tags)
    {
        var labels = new StringBuilder();
        foreach (var tag in tags)
        {
            if (labels.Length > 0)
            {
                labels.Append(',');
            }
            labels.Append(Sanitize(tag.Key, allowColon: false)).Append("=\"").Append(EscapeLabel(Convert.ToString(tag.Value, CultureInfo.InvariantCulture) ?? "")).Append('"');
        }
        return labels.ToString();
    }

    public static string Sanitize(string name, bool allowColon)
    {
        var result = new StringBuilder(name.Length + 1);
        foreach (var c in name)
        {
            result.Append(char.IsAsciiLetterOrDigit(c) || c == '_' || (allowColon && c == ':') ? c : '_');
        }
        if (result.Length == 0 || char.IsAsciiDigit(result[0]))
        {
            result.Insert(0, '_');
        }
        return result.ToString();
    }

    public static string EscapeLabel(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static string EscapeHelp(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static string Format(double value) =>
        double.IsPositiveInfinity(value) ? "+Inf" : double.IsNegativeInfinity(value) ? "-Inf" : double.IsNaN(value) ? "NaN" : value.ToString("R", CultureInfo.InvariantCulture);
}
