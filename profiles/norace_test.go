// SPDX-License-Identifier: Apache-2.0

//go:build !race

package profiles

const raceSlowdown = 1
